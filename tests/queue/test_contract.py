"""One contract, every store: what a TaskQueue promises whether it lives in memory, a folder or the Hub."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from scheduler import codec
from scheduler.errors import InvalidTransition, LeaseLost, TaskNotFound
from scheduler.queue import TaskCancelled
from scheduler.tasks import Status, Task


class Clock:
    def __init__(self):
        self.now = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)

    def __call__(self):
        return self.now

    def advance(self, **kw):
        self.now += timedelta(**kw)


def new(model="acme/model", **kw) -> Task:
    kw.setdefault("now", datetime(2026, 3, 1, 11, 0, tzinfo=timezone.utc))
    return Task.new(model, "acme/data", kw.pop("hardware", "t4-small"), **kw)


def test_an_added_task_is_read_back_equal_by_another_client(open_queue):
    task = new(params={"epochs": 3, "text": "a,b \"c\"\nd"}, submitted_by="alice")
    stored = open_queue().add(task)
    assert stored == task
    assert open_queue().get(task.id) == task


def test_adding_the_same_id_twice_adds_nothing(open_queue):
    queue = open_queue()
    task = new()
    queue.add(task)
    again = queue.add(task.replace(model_id="acme/other"))
    assert again == task
    assert [t.id for t in open_queue().list()] == [task.id]


def test_add_many_is_one_write(open_queue):
    queue = open_queue()
    queue.add(new())
    writes = queue.stats["writes"]
    tasks = [new(f"acme/m{i}") for i in range(5)]
    assert queue.add_many(tasks) == tasks
    assert queue.stats["writes"] == writes + 1
    assert len(open_queue().list()) == 6


def test_claim_takes_the_highest_priority_then_the_oldest(open_queue):
    clock = Clock()
    queue = open_queue(clock=clock)
    old_low = new("acme/old-low", priority=0, now=clock.now - timedelta(hours=2))
    young_high = new("acme/young-high", priority=5, now=clock.now - timedelta(hours=1))
    old_high = new("acme/old-high", priority=5, now=clock.now - timedelta(hours=3))
    queue.add_many([old_low, young_high, old_high])
    order = [queue.claim(f"w{i}", 60).model_id for i in range(3)]
    assert order == ["acme/old-high", "acme/young-high", "acme/old-low"]
    assert queue.claim("w3", 60) is None


def test_a_claim_retried_under_its_lease_id_returns_its_own_task_and_one_holder_may_hold_several(open_queue):
    """A claim whose answer was lost is retried with the same lease id: it must not take a second
    task. The holder's name proves nothing: the same name may hold several tasks."""
    queue = open_queue()
    queue.add_many([new("acme/a"), new("acme/b"), new("acme/c")])
    first = queue.claim("w", 60, lease_id="lease-one")
    assert first.lease_id == "lease-one"
    assert queue.claim("w", 60, lease_id="lease-one") == first
    assert len(queue.list(Status.RUNNING)) == 1
    second = queue.claim("w", 60)
    assert second.id != first.id and second.lease_id not in ("", first.lease_id)
    assert len(queue.list(Status.RUNNING)) == 2


def test_writes_about_a_run_are_refused_once_its_lease_id_is_stale(open_queue):
    """Heartbeat, outcome and usage name the lease id; a cancel, a requeue or another claim makes it stale."""
    clock = Clock()
    queue = open_queue(clock=clock)
    queue.add(new(max_attempts=5))
    first = queue.claim("w", 60)
    clock.advance(seconds=61)
    second = queue.claim("w", 60)  # the same name, after the lease expired: a new run
    assert second.id == first.id and second.lease_id != first.lease_id
    for stale in (lambda: queue.heartbeat(first.id, first.lease_id, 60),
                  lambda: queue.complete(first.id, first.lease_id, {"late": True}),
                  lambda: queue.fail(first.id, first.lease_id, "late")):
        with pytest.raises(LeaseLost) as info:
            stale()
        assert not isinstance(info.value, TaskCancelled)
    assert queue.get(first.id).status is Status.RUNNING and queue.get(first.id).result is None
    assert queue.complete(second.id, second.lease_id, {"ok": 1}).status is Status.DONE


def test_cancel_then_requeue_waits_for_the_cancelled_run_to_stop_and_keeps_only_its_usage(open_queue):
    clock = Clock()
    queue = open_queue(clock=clock)
    queue.add(new())
    run = queue.claim("w", 600)
    cancelled = queue.cancel(run.id, "wrong dataset")
    assert cancelled.lease_id == run.lease_id and cancelled.lease_until == run.lease_until  # "stopping"
    requeued = queue.requeue(run.id)
    assert requeued.status is Status.PENDING and requeued.not_before == run.lease_until
    assert queue.claim("other", 60) is None  # never two runs of one task at once
    with pytest.raises(TaskCancelled):
        queue.heartbeat(run.id, run.lease_id, 600)
    # The old run stops and reports: its usage is kept, its result is not, and the task is free again.
    stopped = queue.complete(run.id, run.lease_id, {"loss": 1.0}, gpu_seconds=12.0, cost_usd=0.002, log="stopped")
    assert stopped.status is Status.PENDING and stopped.result is None and stopped.gpu_seconds == 12.0
    assert stopped.not_before is None and stopped.lease_until is None
    again = queue.claim("other", 60)
    assert again.id == run.id and again.lease_id != run.lease_id and again.attempts == 1


def test_claim_filters_by_hardware_and_respects_not_before(open_queue):
    clock = Clock()
    queue = open_queue(clock=clock)
    later = new("acme/later", not_before=clock.now + timedelta(minutes=5))
    a10g = new("acme/a10g", hardware="a10g-small")
    queue.add_many([later, a10g])
    assert queue.claim("w", 60, hardware="t4-small") is None
    assert queue.claim("w", 60, hardware=["a10g-small"]).id == a10g.id
    clock.advance(minutes=6)
    claimed = queue.claim("w2", 60, hardware="t4-small")
    assert claimed.id == later.id and claimed.status is Status.RUNNING and claimed.attempts == 1


def test_a_claim_records_the_lease_and_a_heartbeat_extends_it(open_queue):
    clock = Clock()
    queue = open_queue(clock=clock)
    queue.add(new())
    task = queue.claim("w", 60)
    assert task.worker == "w" and task.lease_until == clock.now + timedelta(seconds=60)
    assert task.started_at == clock.now
    clock.advance(seconds=30)
    assert queue.heartbeat(task.id, task.lease_id, 60).lease_until == clock.now + timedelta(seconds=60)
    with pytest.raises(LeaseLost):
        queue.heartbeat(task.id, "someone-elses-lease", 60)


def test_complete_records_result_times_and_costs(open_queue):
    clock = Clock()
    queue = open_queue(clock=clock)
    queue.add(new())
    task = queue.claim("w", 60)
    clock.advance(seconds=90)
    done = queue.complete(task.id, task.lease_id, {"loss": 0.25}, gpu_seconds=90.0, cost_usd=0.015)
    again = open_queue().get(task.id)
    assert again == done
    assert (done.status, done.result, done.gpu_seconds, done.cost_usd) == (Status.DONE, {"loss": 0.25}, 90.0, 0.015)
    assert done.finished_at == clock.now and done.lease_until is None
    assert queue.complete(task.id, task.lease_id, {"loss": 0.25}) == done  # a retried completion is a no-op


def test_a_failure_is_retried_with_backoff_until_max_attempts(open_queue):
    clock = Clock()
    queue = open_queue(clock=clock)
    queue.add(new(max_attempts=2))
    first = queue.claim("w", 60)
    retried = queue.fail(first.id, first.lease_id, "CUDA out of memory", gpu_seconds=10)
    assert retried.status is Status.PENDING and retried.not_before > clock.now
    assert "CUDA out of memory" in retried.error
    assert queue.claim("w", 60) is None  # not before the backoff
    clock.now = retried.not_before
    second = queue.claim("w", 60)
    assert second.attempts == 2
    failed = queue.fail(second.id, second.lease_id, "again", gpu_seconds=5)
    assert failed.status is Status.FAILED and failed.gpu_seconds == 15
    assert "attempt 2: again" in failed.error


def test_an_expired_lease_is_taken_over_and_fails_at_max_attempts(open_queue):
    clock = Clock()
    queue = open_queue(clock=clock)
    queue.add(new(max_attempts=2))
    first = queue.claim("dead-worker", 60)
    clock.advance(seconds=61)
    second = queue.claim("new-worker", 60)
    assert second.id == first.id and second.attempts == 2 and second.worker == "new-worker"
    with pytest.raises(LeaseLost):
        queue.complete(first.id, first.lease_id)
    clock.advance(seconds=61)
    assert queue.claim("third", 60) is None
    failed = queue.get(first.id)
    assert failed.status is Status.FAILED and "lease expired" in failed.error


def test_recover_expired_puts_a_dead_workers_task_back(open_queue):
    clock = Clock()
    queue = open_queue(clock=clock)
    queue.add(new())
    task = queue.claim("w", 60)
    assert queue.recover_expired() == []
    clock.advance(seconds=120)
    [recovered] = queue.recover_expired()
    assert recovered.id == task.id and recovered.status is Status.PENDING and recovered.attempts == 1


def test_a_cancelled_run_is_refused_renewals_and_records_only_its_usage(open_queue):
    queue = open_queue()
    queue.add(new())
    task = queue.claim("w", 60)
    cancelled = open_queue().cancel(task.id, "changed my mind")
    assert cancelled.status is Status.CANCELLED and cancelled.error == "changed my mind"
    with pytest.raises(TaskCancelled):
        queue.heartbeat(task.id, task.lease_id, 60)
    recorded = queue.complete(task.id, task.lease_id, {"loss": 1.0}, gpu_seconds=3.0)
    assert (recorded.status, recorded.result, recorded.gpu_seconds) == (Status.CANCELLED, None, 3.0)
    assert queue.cancel(task.id).status is Status.CANCELLED  # idempotent


def test_requeue_gives_a_failed_task_a_fresh_start_and_done_is_final(open_queue):
    queue = open_queue()
    queue.add(new(max_attempts=1))
    task = queue.claim("w", 60)
    queue.fail(task.id, task.lease_id, "boom")
    again = queue.requeue(task.id)
    assert (again.status, again.attempts, again.worker) == (Status.PENDING, 0, "")
    done = queue.claim("w", 60)
    queue.complete(done.id, done.lease_id)
    with pytest.raises(InvalidTransition):
        queue.requeue(task.id)
    with pytest.raises(InvalidTransition):
        queue.cancel(task.id)


def test_unknown_ids_raise_task_not_found(open_queue):
    queue = open_queue()
    with pytest.raises(TaskNotFound) as info:
        queue.get("nope")
    assert info.value.task_id == "nope"
    with pytest.raises(TaskNotFound):
        queue.cancel("nope")


def test_list_filters_by_status_and_dataframe_has_every_column(open_queue):
    queue = open_queue()
    queue.add_many([new("acme/a"), new("acme/b")])
    queue.claim("w", 60)
    assert [t.status for t in queue.list(Status.RUNNING)] == [Status.RUNNING]
    assert len(queue.list(["PENDING", "RUNNING"])) == 2
    frame = queue.dataframe()
    assert list(frame.columns) == list(codec.COLUMNS) and len(frame) == 2
    assert str(frame["submitted_at"].dtype).startswith("datetime64")
    assert queue.counts()["RUNNING"] == 1


def test_archive_moves_old_finished_tasks_out_and_keeps_them(open_queue):
    clock = Clock()
    queue = open_queue(clock=clock)
    queue.add_many([new("acme/a"), new("acme/b"), new("acme/c")])
    for _ in range(2):
        task = queue.claim("w", 60)
        queue.complete(task.id, task.lease_id)
    clock.advance(days=8)
    assert queue.archive(timedelta(days=7)) == 2
    assert [t.model_id for t in queue.list()] == ["acme/c"]
    archived = codec.parse(queue.store.read_at("archive/tasks-2026-03.csv", queue.store.read().version))
    assert sorted(t.model_id for t in archived.tasks()) == ["acme/a", "acme/b"]
    assert queue.archive(timedelta(days=7)) == 0


def test_a_legacy_guide_file_is_migrated_on_the_first_write(open_queue):
    queue = open_queue()
    legacy = b"multimodalart/sd-fine-tunable,Wauplin/concept-1,DONE\nmultimodalart/sd-fine-tunable,Wauplin/concept-2,PENDING\n"
    version = queue.store.read().version
    queue.store.write({queue.store.path: legacy}, expected=version, message="the guide's file")
    pending = queue.list(Status.PENDING)
    assert [t.dataset_id for t in pending] == ["Wauplin/concept-2"]
    queue.claim("w", 60)
    data = queue.store.read().data
    assert data.startswith(codec.HEADER_LINE.encode())
    assert len(codec.parse(data)) == 2


def test_the_gpu_time_of_a_cancelled_run_is_recorded_once_by_its_run(open_queue):
    queue = open_queue()
    queue.add(new())
    task = queue.claim("w", 60)
    queue.cancel(task.id)
    for _ in range(2):  # a retried write (a lost answer) changes nothing
        recorded = queue.fail(task.id, task.lease_id, "stopped", gpu_seconds=42.0, cost_usd=0.01)
    assert (recorded.gpu_seconds, recorded.cost_usd, recorded.status) == (42.0, 0.01, Status.CANCELLED)
    assert recorded.lease_until is None  # the run reported its stop: no longer "stopping"
    with pytest.raises(LeaseLost):
        queue.fail(task.id, "someone-elses-lease", "stopped", gpu_seconds=1.0, cost_usd=0.0)


def test_finishing_one_task_and_claiming_the_next_is_one_write(open_queue):
    from scheduler.outcome import Outcome
    from scheduler.queue import ClaimSpec

    queue = open_queue()
    queue.add_many([new("acme/a"), new("acme/b")])
    first = queue.claim("w", 60)
    writes = queue.stats["writes"]
    outcome = Outcome(first.id, first.lease_id, Status.DONE, result={"loss": 0.5}, gpu_seconds=3.0)
    spec = ClaimSpec("w", "next-lease", 60)
    settled = queue.settle([outcome], spec)
    assert queue.stats["writes"] == writes + 1
    assert settled.recorded[first.id].status is Status.DONE and settled.claimed.lease_id == "next-lease"
    again = queue.settle([outcome], spec)  # the answer was lost and the same write is applied again
    assert again.claimed == settled.claimed and again.recorded[first.id] == settled.recorded[first.id]
    assert queue.stats["writes"] == writes + 1
