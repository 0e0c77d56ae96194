"""The worker as a Space's app on the emulator: hardware goes up once per burst and always comes down."""

from __future__ import annotations

import os
import signal

from scheduler.tasks import Status, Task

from .conftest import BOOT_DELAY, statuses, wait_for


def test_a_burst_of_ten_tasks_costs_one_boot_up_and_one_down(rig):
    rig.start()
    rig.add(10, params={"steps": 2, "sleep": 0.05})
    tasks = rig.wait_all_final()
    rig.wait_settled("cpu-basic")
    assert statuses(tasks) == {Status.DONE}
    assert all(t.result["hardware"] == "t4-small" and t.attempts == 1 for t in tasks)
    bill = rig.billing()
    assert bill["hardware_changes"] == 2, bill["timeline"]
    assert rig.flavors_visited() == ["cpu-basic", "t4-small", "cpu-basic"]
    training = sum(t.gpu_seconds for t in tasks)
    assert bill["billed_seconds"]["t4-small"] <= training + BOOT_DELAY + 5, (bill["billed_seconds"], training)
    assert all(t.cost_usd > 0 for t in tasks)
    assert rig.runtime().sleep_time >= 3600  # the GPU was asked for with a sleep time as a safety net


def test_tasks_for_two_gpus_run_each_on_its_flavor_without_visiting_the_cpu_between(rig):
    rig.start()
    rig.add(2, "t4-medium")
    rig.add(2, "a10g-small")
    tasks = rig.wait_all_final()
    rig.wait_settled("cpu-basic")
    assert statuses(tasks) == {Status.DONE}
    assert all(t.result["hardware"] == t.hardware for t in tasks)
    assert rig.flavors_visited() == ["cpu-basic", "t4-medium", "a10g-small", "cpu-basic"]


def test_failures_timeouts_and_a_cancelled_stubborn_task_leave_the_space_on_cpu(rig):
    rig.start()
    failing = rig.add(params={"kind": "boom"}, max_attempts=2, priority=4)[0]
    flaky = rig.add(params={"kind": "flaky"}, max_attempts=3, priority=3)[0]
    slow = rig.add(params={"kind": "stubborn"}, timeout_s=2, priority=2)[0]
    stuck = rig.add(params={"kind": "stubborn"}, timeout_s=600, priority=1)[0]
    fine = rig.add(2, params={"steps": 1})
    wait_for(lambda: rig.queue.get(stuck.id).status is Status.RUNNING, 90, "the stubborn task to start")
    rig.queue.cancel(stuck.id, "not needed any more")
    tasks = {t.id: t for t in rig.wait_all_final()}
    rig.wait_settled("cpu-basic")
    assert tasks[failing.id].status is Status.FAILED and "exploded on purpose" in tasks[failing.id].error
    assert tasks[failing.id].attempts == 2
    assert tasks[flaky.id].status is Status.DONE and tasks[flaky.id].result["recovered_on_attempt"] == 2
    assert tasks[slow.id].status is Status.FAILED and "timed out" in tasks[slow.id].error
    assert tasks[stuck.id].status is Status.CANCELLED
    assert rig.queue.get(stuck.id).gpu_seconds > 0  # a cancelled run's GPU time was paid: it is kept
    assert all(tasks[t.id].status is Status.DONE and tasks[t.id].attempts == 1 for t in fine)
    assert rig.flavors_visited() == ["cpu-basic", "t4-small", "cpu-basic"]


def test_a_worker_killed_mid_task_is_recovered_after_its_lease_and_the_gpu_released(rig):
    rig.start()
    victim = rig.add(params={"steps": 40, "sleep": 0.1})[0]
    bystander = rig.add(params={"steps": 1}, priority=-1)[0]
    wait_for(lambda: rig.queue.get(victim.id).status is Status.RUNNING, 60, "the task to start")
    os.kill(rig.worker_pid(), signal.SIGKILL)
    wait_for(lambda: rig.runtime().stage == "RUNTIME_ERROR", 30, "the Space to report the crash")
    assert rig.runtime().hardware == "t4-small"
    # The Hub does not restart a crashed app; its owner (or a watchdog) does.
    rig.api.restart_space(rig.space)
    tasks = {t.id: t for t in rig.wait_all_final()}
    rig.wait_settled("cpu-basic")
    assert tasks[victim.id].status is Status.DONE and tasks[victim.id].attempts == 2
    assert tasks[bystander.id].status is Status.DONE and tasks[bystander.id].attempts == 1


def test_the_workers_token_appears_in_no_log_csv_error_or_emulator_file(rig):
    rig.start()
    leak = rig.add(params={"kind": "leaky"}, max_attempts=1)[0]
    rig.add(params={"steps": 1})
    tasks = {t.id: t for t in rig.wait_all_final()}
    rig.wait_settled("cpu-basic")
    assert tasks[leak.id].status is Status.FAILED and "PermissionError: denied for token ***" in tasks[leak.id].error
    searched = 0
    for root in (rig.work_dir, rig.emulator.data_dir):
        for path in root.rglob("*"):
            if not path.is_file() or path.name == "space.json":  # the Hub keeps the secret itself, as it must
                continue
            searched += 1
            assert rig.token.encode() not in path.read_bytes(), path
    assert searched > 5
    assert "my token is ***" in (rig.work_dir / "logs" / f"{leak.id}.log").read_text()
    assert "worker:" in rig.space_log()


def test_a_task_that_keeps_killing_the_space_is_failed_by_the_crash_loop_guard(rig):
    rig.start("crash_always", "--crash-loop-boots", "2")
    culprit = rig.add(max_attempts=10)[0]

    def restart_if_crashed():
        if rig.runtime().stage == "RUNTIME_ERROR":
            rig.api.restart_space(rig.space)  # a watchdog restarting the crashed app
        return rig.queue.get(culprit.id).is_terminal

    wait_for(restart_if_crashed, 120, "the guard to fail the task", every=0.3)
    rig.wait_settled("cpu-basic")
    culprit = rig.queue.get(culprit.id)
    assert culprit.status is Status.FAILED and "crash loop" in culprit.error
    assert culprit.attempts < culprit.max_attempts


# ---------------------------------------------------------------- the Hub's rules (hub-facts §11)


def test_during_a_switch_only_the_gpu_replica_runs_the_task_and_no_extra_boot_is_billed(rig):
    assert rig.emulator.set_rules().replica_overlap_s > 0  # the old replica runs on after the switch
    rig.start()
    task = rig.add(params={"steps": 2})[0]
    tasks = rig.wait_all_final()
    rig.wait_settled("cpu-basic")
    assert tasks[0].status is Status.DONE and tasks[0].attempts == 1
    assert tasks[0].result["hardware"] == "t4-small"
    assert rig.emulator.hub.spaces.info(rig.space)["boots"] == 3  # cpu, t4, cpu: nothing more
    assert task.id in rig.space_log()


def test_a_switch_back_to_the_same_gpu_while_the_old_gpu_replica_still_runs_leaves_the_work_to_the_new_one(rig):
    """t4 -> cpu -> t4 within the old t4 replica's overlap: that replica asked for its own replacement,
    so it must not take the new one's tasks, count its boots, or give its GPU back as it stops."""
    rig.emulator.set_rules("overlap=8")  # the old replica outlives the whole cpu-basic round trip
    rig.start()
    first = rig.add(params={"steps": 2})[0]
    wait_for(lambda: rig.queue.get(first.id).status is Status.DONE, 60, "the first task")
    wait_for(lambda: rig.runtime().requested_hardware == "cpu-basic", 30, "the GPU given back")
    second = rig.add(params={"steps": 40, "sleep": 0.2})[0]  # still running when the old replica stops
    rig.wait_all_final(120)
    rig.wait_settled("cpu-basic")
    second = rig.queue.get(second.id)
    assert second.status is Status.DONE and second.attempts == 1, (second.status, second.attempts, second.error)
    assert second.result["hardware"] == "t4-small"
    log = rig.space_log()
    # Only the decision of the replica that ran it gives the GPU back, once the task is done.
    assert "released t4-small" not in log and "crash loop" not in log and "interrupted" not in log, log[-3000:]


def test_a_slept_space_is_woken_by_an_add_that_knows_it_and_runs_the_task(rig):
    from scheduler import open_queue

    rig.start()
    rig.emulator.advance_clock(48 * 3600 + 60)  # nobody visited the free cpu-basic Space for two days
    wait_for(lambda: rig.runtime().stage in ("SLEEPING", "STOPPED"), 30, "the Space to sleep")
    queue = open_queue("hf://datasets/demo/queue", token=rig.token, endpoint=rig.emulator.url, space=rig.space)
    task = queue.add(Task.new("demo/base-model", "demo/data", "t4-small", params={"steps": 1}))
    assert queue.last_wake.requested and "asleep" in queue.last_wake.reason
    done = wait_for(lambda: (t := rig.queue.get(task.id)).is_terminal and t, 120, "the task to run", every=0.3)
    assert done.status is Status.DONE and done.attempts == 1
    rig.wait_settled("cpu-basic")


def test_a_burst_longer_than_one_tasks_timeout_and_ten_minutes_is_never_cut_by_the_sleep_time(rig):
    rig.start("by_param", "--sleep-time", "60")
    tasks = rig.add(3, params={"steps": 4, "sleep": 0.5}, timeout_s=300)
    wait_for(lambda: any(rig.queue.get(t.id).status is Status.RUNNING for t in tasks), 60, "the burst to start")
    # One timeout + 10 min (900 s) has passed for the Hub, with no visitor: a sleep time sized for one
    # task would put the Space to sleep mid-burst.
    rig.emulator.advance_clock(950)
    final = rig.wait_all_final(120)
    rig.wait_settled("cpu-basic")
    assert {t.status for t in final} == {Status.DONE} and all(t.attempts == 1 for t in final)
    assert not any(e.get("stage") in ("SLEEPING", "STOPPED") for e in rig.billing()["timeline"])
    assert "sleep time of t4-small extended" in rig.space_log()


def test_the_cost_shown_for_a_burst_is_what_the_hub_bills_for_it(rig):
    """Per started minute of every paid replica (boots, tasks, waits, the overlap of a switch), from the
    periods the worker writes to billing/periods.csv, against the emulator's own bill."""
    from scheduler import billing
    from scheduler.hardware import hourly_prices

    rig.start()
    tasks = rig.add(3, params={"steps": 2, "sleep": 0.2})
    final = rig.wait_all_final()
    rig.wait_settled("cpu-basic")
    wait_for(lambda: all(p.end for p in billing.parse(rig.queue.read_file(billing.PERIODS_PATH))), 30,
             "the GPU replica's period to be closed")
    periods = billing.parse(rig.queue.read_file(billing.PERIODS_PATH))
    assert [(p.flavor, p.ended_by) for p in periods] == [("t4-small", "stop")]
    shown = billing.bill(periods, final, hourly_prices(rig.api), space=rig.space)
    billed = rig.billing()["totals"]["usd"]
    assert billed > 0 and abs(shown.billed_usd - billed) <= 0.01 * billed, (shown, rig.billing()["periods"])
    assert shown.tasks_usd == round(sum(t.cost_usd for t in final), 6) and shown.overhead_usd > 0
    assert len(tasks) == 3
