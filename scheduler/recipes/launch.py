"""Several devices: one training process per device under `accelerate launch` (DDP), the way the
ecosystem runs Trainer on many GPUs (`nn.DataParallel` would keep a full copy per card and drive
them from one Python thread).

The callback's process starts the launcher and waits. Ranks reach the task through files:
rank 0 logs to stdout (inherited: it lands in the task log) and writes the task's progress file;
a stop request is relayed as a stop file every rank reads after each step (the ranks agree on
it through an all-reduce, see `fit.py`); each rank writes its outcome to `outcome-<rank>.json`.
torchrun starts ranks in their own sessions, out of reach of a kill of the callback's process
group, so every rank also exits on its own once the callback's process is gone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

from ..errors import NonRetryable
from .plan import Device

_POLL_S = 0.2


def command(spec_file: Path, device: Device) -> list[str]:
    """`accelerate launch` with one process per device; `--multi_gpu` is accelerate's DDP mode
    (torchrun underneath), which on CPU processes (tests) uses the gloo backend. Mixed precision
    is left to each rank's TrainingArguments (the plan's bf16/fp16), which override this default."""
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "1",
            "--num_processes", str(device.count), "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", "0", "-m", "scheduler.recipes.launch", str(spec_file)]


def run_distributed(task, ctx, device: Device) -> dict:
    """Launch the ranks, relay stop requests to them, return rank 0's result or raise its error
    (a NonRetryable stays one)."""
    from ..callbacks import COLUMNS, write_json_atomic

    folder = Path(ctx.output_dir) / "launch"
    folder.mkdir(parents=True, exist_ok=True)
    stop_file = folder / "stop"
    for stale in [stop_file, *folder.glob("outcome-*.json")]:
        stale.unlink(missing_ok=True)
    spec_file = folder / "spec.json"
    write_json_atomic(spec_file, {
        "task": dict(zip(COLUMNS, task.to_cells())), "work_dir": str(ctx.files.work_dir), "device": asdict(device),
        "stop_file": str(stop_file), "outcome_dir": str(folder), "parent_pid": os.getpid(),
        "endpoint": ctx.api.endpoint})
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if ctx.api.token:
        env["HF_TOKEN"] = ctx.api.token  # by environment, never argv
    ctx.log(f"starting {device.count} training processes: accelerate launch (DDP)")
    launcher = subprocess.Popen(command(spec_file, device), env=env, stdin=subprocess.DEVNULL)
    try:
        while launcher.poll() is None:
            if ctx.should_stop() and not stop_file.exists():
                stop_file.touch()
            time.sleep(_POLL_S)
    finally:
        if launcher.poll() is None:  # this process is being torn down: take the ranks with it
            launcher.terminate()
            try:
                launcher.wait(30)
            except subprocess.TimeoutExpired:
                launcher.kill()
    outcomes = {}
    for path in sorted(folder.glob("outcome-*.json")):
        try:
            outcomes[int(path.stem.split("-")[1])] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
    first = outcomes.get(0)
    if first is not None and first.get("ok"):
        return first["result"]
    failed = next((o for _, o in sorted(outcomes.items()) if not o.get("ok")), None)
    if failed is None:
        raise RuntimeError(f"the training processes exited with code {launcher.returncode} without a result")
    if failed.get("nonretryable"):
        raise NonRetryable(failed["reason"], failed.get("hint", ""))
    raise RuntimeError(failed["error"])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed parent not yet reaped is a zombie, which kill(0) still finds
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _rank_main(spec_path: str) -> int:
    from ..callbacks import RunContext, TaskFiles, describe_exception, write_json_atomic
    from ..tasks import Task
    from .finetune import run
    from .params import read_params

    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    parent = int(spec["parent_pid"])

    def watchdog() -> None:
        while _alive(parent):
            time.sleep(0.5)
        os._exit(70)

    threading.Thread(target=watchdog, daemon=True).start()
    rank = int(os.environ.get("RANK", "0"))
    task = Task.from_cells(spec["task"])
    stop_file = Path(spec["stop_file"])

    def emit(line: str) -> None:
        if rank == 0:
            sys.stdout.write(line.rstrip("\n") + "\n")
            sys.stdout.flush()

    ctx = RunContext(task, TaskFiles(Path(spec["work_dir"]), task.id), emit=emit, should_stop=stop_file.exists,
                     token=os.environ.get("HF_TOKEN") or None, endpoint=spec.get("endpoint"))
    try:
        device = Device(**{**spec["device"], "capability": tuple(spec["device"]["capability"] or ()) or None})
        outcome = {"ok": True, "result": run(task, ctx, read_params(task.params), device, rank=rank)}
    except BaseException as exc:  # noqa: BLE001 - reported to the launching process, whatever it is
        outcome = {"ok": False, "error": describe_exception(exc), "nonretryable": isinstance(exc, NonRetryable),
                   "reason": getattr(exc, "reason", str(exc)), "hint": getattr(exc, "hint", "")}
        sys.stdout.write(f"rank {rank}: {outcome['error']}\n")
        sys.stdout.flush()
    write_json_atomic(Path(spec["outcome_dir"]) / f"outcome-{rank}.json", outcome)
    return 0 if outcome["ok"] else 1


if __name__ == "__main__":
    sys.exit(_rank_main(sys.argv[1]))
