"""decide() as a table: one row per rule, each named by what it shows."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from scheduler.decide import Downgrade, GiveUp, Policy, RequestHardware, RunTask, Serve, Wait, decide
from scheduler.hardware import LOCAL, Runtime
from scheduler.lease import Holder
from scheduler.tasks import Status, Task

NOW = datetime(2026, 1, 31, 12, 0, 0, tzinfo=timezone.utc)
ME = Holder("owner/space", "100-aaaa")
PREDECESSOR = "owner/space#99-dead"


def at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def task(id: str, hardware: str = "t4-small", *, status: Status = Status.PENDING, priority: int = 0,
         age_s: float = 60, not_before: float | None = None, worker: str = "", lease: float | None = None,
         attempts: int = 0, max_attempts: int = 3) -> Task:
    return Task(id=id, model_id="a/m", dataset_id="a/d", hardware=hardware, status=status, priority=priority,
                submitted_at=at(-age_s), not_before=None if not_before is None else at(not_before),
                worker=worker, lease_until=None if lease is None else at(lease), attempts=attempts,
                max_attempts=max_attempts)


def on(hardware: str | None, requested: str | None = None, stage: str = "RUNNING") -> Runtime:
    return Runtime(stage=stage, hardware=hardware, requested_hardware=requested or hardware)


CPU = on("cpu-basic")
T4 = on("t4-small")

ROWS = [
    # (name, runtime, tasks, kwargs, expected)
    ("an empty queue on cpu serves", CPU, [], {}, Serve),
    ("finished tasks alone on cpu serve", CPU, [task("d", status=Status.DONE), task("f", status=Status.FAILED)], {}, Serve),
    ("a pending task for another flavor on cpu requests that flavor", CPU, [task("a")], {},
     RequestHardware("t4-small", "")),
    ("a task for the current flavor runs", T4, [task("a")], {}, RunTask("a", "t4-small")),
    ("the highest priority task for the current flavor runs first", T4,
     [task("old", age_s=100), task("urgent", priority=5, age_s=1)], {}, RunTask("urgent", "t4-small")),
    ("between equal priorities the oldest runs first", T4,
     [task("new", age_s=1), task("old", age_s=100)], {}, RunTask("old", "t4-small")),
    ("tasks for the current flavor run before a higher priority task for another flavor", T4,
     [task("a", priority=0), task("b", hardware="a10g-small", priority=9)], {}, RunTask("a", "t4-small")),
    ("on a gpu with nothing runnable the gpu is given back", T4, [], {}, Downgrade("")),
    ("on a gpu with only tasks for other gpus the worker switches directly, not via cpu", T4,
     [task("b", hardware="a10g-small")], {}, RequestHardware("a10g-small", "")),
    ("a running task with an expired lease is runnable again", T4,
     [task("a", status=Status.RUNNING, worker="other/1", lease=-1, attempts=1)], {}, RunTask("a", "t4-small")),
    ("an expired task out of attempts does not bring up a gpu", CPU,
     [task("a", status=Status.RUNNING, worker="x/1", lease=-1, attempts=3, max_attempts=3)], {}, Serve),
    ("a task with a live lease held elsewhere is not runnable", CPU,
     [task("a", status=Status.RUNNING, worker="elsewhere/1", lease=300, attempts=1)], {}, Serve),
    ("a run of our predecessor that may be taken back runs", T4,
     [task("a", status=Status.RUNNING, worker=PREDECESSOR, lease=3000, attempts=1)], {"takeover": {"a"}},
     RunTask("a", "t4-small")),
    ("a live run under our own name but not taken back is not ours: names prove nothing", T4,
     [task("a", status=Status.RUNNING, worker=str(ME), lease=300, attempts=1)], {}, Downgrade("")),
    ("on a gpu our predecessor's run is waited for until it may be taken back", T4,
     [task("a", status=Status.RUNNING, worker=PREDECESSOR, lease=3000, attempts=1)], {"takeover_after": at(45)},
     Wait("", at(45))),
    ("an old replica without the current flavor's accelerator runs nothing and keeps the gpu", T4,
     [task("a")], {"replica_ready": False}, Wait("")),
    ("tasks that run elsewhere (Jobs) run whatever the space's hardware", CPU,
     [task("a", hardware="h200")], {"manages_hardware": False}, RunTask("a", "h200")),
    ("a task backing off on cpu is waited for", CPU, [task("a", not_before=600)], {}, Wait("", at(600))),
    ("on a gpu a task due soon on it is waited for", T4, [task("a", not_before=30)], {}, Wait("", at(30))),
    ("on a gpu a task due later than the threshold is not worth the gpu", T4,
     [task("a", not_before=3600)], {}, Downgrade("")),
    ("on a gpu a task due soon on another flavor does not keep this one", T4,
     [task("a", hardware="a10g-small", not_before=30)], {}, Downgrade("")),
    ("on a gpu the lease of our space's previous incarnation is waited out", T4,
     [task("a", status=Status.RUNNING, worker=PREDECESSOR, lease=60, attempts=1)], {}, Wait("", at(60))),
    ("on a gpu a live lease of a worker elsewhere does not hold the gpu", T4,
     [task("a", status=Status.RUNNING, worker="laptop/7", lease=60, attempts=1)], {}, Downgrade("")),
    ("a flavor already requested is never requested twice", on("cpu-basic", "t4-small", "RUNNING_BUILDING"),
     [task("a")], {}, Wait("")),
    ("a requested gpu being built is waited for even with tasks for another gpu",
     on("cpu-basic", "t4-small", "RUNNING_BUILDING"), [task("b", hardware="a10g-small")], {}, Wait("")),
    ("a downgrade in flight is not interrupted by a new request", on("t4-small", "cpu-basic", "RUNNING_BUILDING"),
     [task("b", hardware="a10g-small")], {}, Wait("")),
    ("a restart on the same flavor is waited out", on("t4-small", "t4-small", "RUNNING_BUILDING"), [task("a")], {},
     Wait("")),
    ("a fresh boot still starting its app runs tasks", on("t4-small", stage="APP_STARTING"), [task("a")], {},
     RunTask("a", "t4-small")),
    ("a request stuck past the deadline is given up and its tasks failed with retry",
     on("cpu-basic", "t4-small", "RUNNING_BUILDING"), [task("a"), task("b", hardware="a10g-small")],
     {"switch_age_s": 10_000}, GiveUp("t4-small", ("a",), "", True)),
    ("a request the hub refused is given up", on(None, "a10g-large", "BUILD_ERROR"), [task("a", hardware="a10g-large")],
     {}, GiveUp("a10g-large", ("a",), "", True)),
    ("a request younger than the deadline is waited for", on("cpu-basic", "t4-small", "RUNNING_BUILDING"),
     [task("a")], {"switch_age_s": 10}, Wait("")),
    ("a task naming an unknown flavor is failed without retry", CPU, [task("a", hardware="h9000")], {},
     GiveUp("h9000", ("a",), "", False)),
    ("a paused space is left alone", on("t4-small", stage="PAUSED"), [task("a")], {}, Wait("")),
    ("a local worker runs any flavor", on(LOCAL), [task("a", hardware="a100-large")], {},
     RunTask("a", "a100-large")),
    ("a local worker with nothing to do serves", on(LOCAL), [], {}, Serve),
    ("a local worker waits for a backing-off task", on(LOCAL), [task("a", not_before=5)], {}, Wait("", at(5))),
    ("a task for the idle flavor runs on it", CPU, [task("a", hardware="cpu-basic")], {}, RunTask("a", "cpu-basic")),
    ("a paid cpu counts as paid hardware", on("cpu-upgrade"), [], {}, Downgrade("")),
    ("cancelled tasks never bring up a gpu", CPU, [task("a", status=Status.CANCELLED)], {}, Serve),
]


def _same(actual, expected) -> bool:
    if isinstance(expected, type):
        return isinstance(actual, expected)
    if type(actual) is not type(expected):
        return False
    for name in ("task_id", "flavor", "until", "task_ids", "retry"):
        if hasattr(expected, name) and getattr(actual, name) != getattr(expected, name):
            return False
    return True


@pytest.mark.parametrize("name,runtime,tasks,kwargs,expected", ROWS, ids=[r[0] for r in ROWS])
def test_decide(name, runtime, tasks, kwargs, expected):
    action = decide(runtime, tasks, NOW, holder=ME, policy=Policy(max_gpu_wait_s=180), **kwargs)
    assert _same(action, expected), f"{name}: got {action}"
    assert getattr(action, "reason", "x"), "every action explains itself"


def test_every_action_type_appears_in_the_table():
    kinds = {type(r[4]) if not isinstance(r[4], type) else r[4] for r in ROWS}
    assert kinds == {Serve, RunTask, RequestHardware, Downgrade, Wait, GiveUp}


def test_decide_never_requests_the_flavor_already_requested_whatever_the_queue():
    from hypothesis import given, strategies as st

    flavors = ["cpu-basic", "t4-small", "t4-medium", "a10g-small"]
    stages = ["RUNNING", "RUNNING_BUILDING", "BUILDING", "APP_STARTING"]

    @given(current=st.sampled_from(flavors + [None]), requested=st.sampled_from(flavors),
           stage=st.sampled_from(stages),
           specs=st.lists(st.tuples(st.sampled_from(flavors), st.integers(-3, 3), st.sampled_from([None, -5, 5, 500])),
                          max_size=6))
    def check(current, requested, stage, specs):
        tasks = [task(f"t{i}", hw, priority=p, not_before=nb) for i, (hw, p, nb) in enumerate(specs)]
        action = decide(on(current, requested, stage), tasks, NOW, holder=ME)
        if isinstance(action, RequestHardware):
            assert action.flavor != requested
            assert current == requested and stage not in ("BUILDING", "RUNNING_BUILDING")

    check()
