"""What the worker should do next, as a pure function of the Space's runtime and the queue.

`decide()` does no I/O and reads no clock, so every rule below is a row in a table test.

Rules, in order:
1. A local worker runs every runnable task itself and never touches hardware.
2. A paused or stopped Space is left alone: its owner paused it.
3. While a hardware change is in flight (requested != current, or a build/restart is running),
   nothing is requested again: every request restarts the Space. The request is given up when
   the Hub refused it (an error stage) or it has been pending longer than
   `Policy.request_deadline_s`: the runnable tasks for that flavor are failed *with retry* (the
   queue's backoff; their attempts are bounded by max_attempts, so a flavor that never comes
   fails them for good) and the Space goes back to the idle flavor. A request the Hub answers
   with a 4xx (no payment method, a read-only token) never starts a change; the worker gives it
   up the same way when the request is refused.
4. Runnable tasks for the current flavor run first (priority, then age), so a burst costs one
   boot up and one boot down.
5. Runnable tasks for another flavor: request it, straight from one GPU to another (a detour
   through the idle flavor costs an extra boot). A task naming an unknown flavor is failed.
6. Nothing runnable: on paid hardware, wait for a task due within `Policy.max_gpu_wait_s`
   (a retry backoff, or the lease of a task our Space's previous incarnation held), else
   downgrade; on the idle flavor, wait for the next due task or serve.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Collection, Iterable, Union

from .flavors import FALLBACK_SPACE_FLAVORS, ZERO_GPU
from .hardware import ERROR_STAGES, IDLE_FLAVOR, SLEEPING_STAGES, STOPPED_STAGES, Runtime, is_paid
from .lease import Holder, is_predecessor
from .tasks import Status, Task


@dataclass(frozen=True)
class Policy:
    idle_flavor: str = IDLE_FLAVOR
    # A paid flavor stays up this long for a task that is due soon, rather than pay two boots.
    max_gpu_wait_s: float = 180.0
    # A requested flavor that has not arrived after this long is treated as unavailable.
    request_deadline_s: float = 900.0


@dataclass(frozen=True)
class Serve:
    reason: str = "nothing to run"


@dataclass(frozen=True)
class RunTask:
    task_id: str
    flavor: str
    reason: str = ""


@dataclass(frozen=True)
class RequestHardware:
    flavor: str
    reason: str


@dataclass(frozen=True)
class Downgrade:
    reason: str


@dataclass(frozen=True)
class Wait:
    reason: str
    until: datetime | None = None


@dataclass(frozen=True)
class GiveUp:
    """Fail these tasks (with retry when `retry`) and return to the idle flavor."""

    flavor: str
    task_ids: tuple[str, ...]
    reason: str
    retry: bool = True


# Space flavors a task may ask for when the Hub's list is not at hand.
TRAINABLE = frozenset(n for n in FALLBACK_SPACE_FLAVORS if n != ZERO_GPU)

Action = Union[Serve, RunTask, RequestHardware, Downgrade, Wait, GiveUp]


def runnable(task: Task, now: datetime, takeover: Collection[str] = ()) -> bool:
    """Would a claim give this task to this worker now? `takeover`: ids of RUNNING tasks its own
    predecessor held, which it takes back. Expired tasks out of attempts are failed by the claim
    instead, so they are not worth a GPU."""
    if not (task.is_runnable(now) or (task.status is Status.RUNNING and task.id in takeover)):
        return False
    return not (task.status is Status.RUNNING and task.attempts >= task.max_attempts)


def due_at(task: Task, now: datetime, holder: Holder | None, takeover_after: datetime | None = None) -> datetime | None:
    """When a task that is not runnable yet will be: after its backoff, or, for a run of this worker's
    predecessor (a previous boot of the same home), when this worker takes it back (`takeover_after`)
    or its lease runs out, whichever comes first."""
    if task.status is Status.PENDING and task.not_before is not None and task.not_before > now:
        return task.not_before
    if holder is not None and is_predecessor(task, holder) and task.lease_until is not None and task.lease_until > now:
        return min(task.lease_until, takeover_after) if takeover_after is not None else task.lease_until
    return None


def best(tasks: Iterable[Task]) -> Task:
    return min(tasks, key=Task.sort_key)


def decide(runtime: Runtime, tasks: Iterable[Task], now: datetime, *, holder: Holder | None = None,
           takeover: Collection[str] = (), takeover_after: datetime | None = None,
           switch_age_s: float | None = None, policy: Policy = Policy(), manages_hardware: bool = True,
           replica_ready: bool = True, offered: Collection[str] = TRAINABLE) -> Action:
    """The next action. `holder`: this worker (its home and boot); `takeover`: its predecessor's tasks it
    may take back now, the others at `takeover_after`; `switch_age_s`: how long the current hardware
    change has been observed; `manages_hardware`: False when tasks run elsewhere (local, Jobs);
    `replica_ready`: False when this replica does not physically have the current flavor's accelerator
    (the old replica during a switch), which then runs nothing; `offered`: the Space flavors a task may
    ask for (the Hub's list; ZeroGPU never)."""
    active = [t for t in tasks if t.status in (Status.PENDING, Status.RUNNING)]
    ready = [t for t in active if runnable(t, now, takeover)]
    later = [(when, t) for t in active if t not in ready
             and (when := due_at(t, now, holder, takeover_after)) is not None]

    if runtime.local or not manages_hardware:
        if ready:
            task = best(ready)
            where = "runs here: local worker" if runtime.local else "runs elsewhere (Jobs)"
            return RunTask(task.id, task.hardware, where)
        return _idle(later, "local worker" if runtime.local else "Jobs executor")

    if runtime.stage in STOPPED_STAGES | SLEEPING_STAGES:
        return Wait(f"the Space is {runtime.stage.lower()}; only its owner restarts it")

    if runtime.switching:
        target = runtime.requested_hardware or runtime.hardware or policy.idle_flavor
        stuck = runtime.stage in ERROR_STAGES or (switch_age_s is not None and switch_age_s > policy.request_deadline_s)
        if stuck and is_paid(target, policy.idle_flavor):
            why = (f"the Hub reports {runtime.stage}" if runtime.stage in ERROR_STAGES
                   else f"still not running after {switch_age_s:.0f}s")
            if runtime.error:
                why += f" ({runtime.error})"
            ids = tuple(t.id for t in sorted(ready, key=Task.sort_key) if t.hardware == target)
            return GiveUp(target, ids, f"{target} was requested but is unavailable: {why}")
        return Wait(f"switching {runtime.hardware or 'nothing'} -> {target}; never requested twice")

    current = runtime.hardware or policy.idle_flavor
    on_paid = is_paid(current, policy.idle_flavor)
    if not replica_ready:
        return Wait(f"the Space is on {current} but this replica is not on that hardware (an old replica "
                    f"during a switch): the new one takes over")

    unknown = [t for t in ready if t.hardware not in offered and t.hardware != policy.idle_flavor]
    if unknown:
        task = best(unknown)
        why = ("zero-a10g (ZeroGPU) gives no GPU to a training process" if task.hardware == ZERO_GPU
               else f"{task.hardware!r} is not a Space hardware flavor")
        return GiveUp(task.hardware, tuple(t.id for t in unknown if t.hardware == task.hardware), why, retry=False)

    here = [t for t in ready if t.hardware == current]
    if here:
        task = best(here)
        return RunTask(task.id, current, f"{len(here)} runnable task(s) for {current}")

    if ready:
        task = best(ready)
        return RequestHardware(task.hardware, f"task {task.id} needs {task.hardware} (now on {current})")

    if on_paid:
        soon = [(when, t) for when, t in later if t.hardware == current
                and (when - now).total_seconds() <= policy.max_gpu_wait_s]
        if soon:
            when, task = min(soon, key=lambda item: item[0])
            return Wait(f"task {task.id} is due on {current} in {(when - now).total_seconds():.0f}s", when)
        return Downgrade(f"nothing runnable on {current}")
    return _idle(later, f"on {current}")


def _idle(later: list[tuple[datetime, Task]], where: str) -> Action:
    if later:
        when, task = min(later, key=lambda item: item[0])
        return Wait(f"{where}: next task {task.id} is due at {when:%H:%M:%S}", when)
    return Serve(f"{where}: nothing to run")
