"""GPU cost of a burst of tasks: the worker against the guide's one-task-per-boot approach.

Both run as the app of an emulated Space (the emulator restarts the app after a boot delay on
every hardware change, as the Hub does) and train the same tasks with space_app/train.py. The
baseline is the guide's skeleton with a safe queue: at start, if a task is pending and the Space
is on the GPU, train it, mark it done and ask for cpu-basic; if on the CPU, ask for the GPU. So
every task costs a boot up and a boot down. The figures are the emulator's billing timeline.

    python bench/gpu_cost.py [--tasks 10] [--boot-delay 3] [--epochs 3]
"""

from __future__ import annotations

import argparse
import io
import os
import random
import shlex
import sys
import tempfile
import time
from pathlib import Path

import harness  # bench/harness.py, next to this script

ROOT = harness.ROOT
TRAIN = ROOT / "space_app" / "train.py"
TOKEN = "bench-token-not-secret"
FLAVOR = "t4-small"


# ---------------------------------------------------------------- the guide's app (baseline)


def guide_app(queue_url: str, work_dir: str) -> int:
    """One task per boot, as in the guide's "temporarily upgrade your Space" skeleton."""
    from huggingface_hub import HfApi

    from scheduler.callbacks import RunContext, TaskFiles, load_callback
    from scheduler.queue import TaskQueue

    space = os.environ["SPACE_ID"]
    token = os.environ.get("HF_TOKEN")
    api = HfApi(token=token)
    queue = TaskQueue.open(queue_url, token=token)
    while not queue.list("PENDING") and not queue.list("RUNNING"):
        time.sleep(0.2)
    if api.get_space_runtime(space).hardware == FLAVOR:
        task = queue.claim(f"{space}/{os.getpid()}", 600, hardware=FLAVOR)
        if task is not None:
            started = time.monotonic()
            ctx = RunContext(task, TaskFiles(Path(work_dir), task.id), emit=print, should_stop=lambda: False,
                             token=token, endpoint=os.environ.get("HF_ENDPOINT"))
            result = load_callback(f"{TRAIN}:train")(task, ctx)
            queue.complete(task.id, task.lease_id, result, gpu_seconds=time.monotonic() - started)
        api.request_space_hardware(space, "cpu-basic")
    else:
        api.request_space_hardware(space, FLAVOR)
    while True:  # the restart that was just requested ends this process
        time.sleep(1)


# ---------------------------------------------------------------- the measurement


def dataset_csv(n: int = 400) -> bytes:
    rng = random.Random(7)
    words = {"pos": ["great", "lovely", "superb", "fun"], "neg": ["awful", "dull", "broken", "bad"]}
    filler = ["the", "film", "plot", "music", "was", "really", "quite", "ending"]
    out = io.StringIO()
    out.write("text,label\n")
    for _ in range(n):
        label = rng.choice(["pos", "neg"])
        out.write(f"{' '.join(rng.sample(filler, 4) + rng.sample(words[label], 2))},{label}\n")
    return out.getvalue().encode()


def measure(hub, space: str, command: list[str], n_tasks: int, epochs: int, timeout: float) -> dict:
    import httpx
    from huggingface_hub import HfApi

    from scheduler.queue import TaskQueue
    from scheduler.tasks import Status, Task

    api = HfApi(endpoint=hub.url, token=TOKEN)
    queue_url = f"hf://datasets/demo/{space.split('/')[1]}-queue"
    queue = TaskQueue.open(queue_url, token=TOKEN, endpoint=hub.url)
    queue.init()
    api.create_repo(space, repo_type="space", space_sdk="gradio")
    api.add_space_secret(space, "HF_TOKEN", TOKEN)
    command = [c.replace("{queue}", queue_url) for c in command]
    env = {"PYTHONPATH": harness.child_pythonpath()}
    httpx.post(f"{hub.url}/_emulator/spaces/{space}/supervise",
               json={"command": command, "cwd": str(ROOT), "env": env}).raise_for_status()
    harness.wait_until(lambda: harness.settled(api, space), timeout, "the Space to start")

    started = time.monotonic()
    queue.add_many([Task.new("demo/base-model", "demo/reviews", FLAVOR, params={"epochs": epochs})
                    for _ in range(n_tasks)])
    harness.wait_until(lambda: all(t.status is Status.DONE for t in queue.list()), timeout, "every task done")
    harness.wait_until(lambda: harness.settled(api, space), timeout, "the Space back on cpu-basic")
    wall = time.monotonic() - started
    from scheduler import billing
    from scheduler.hardware import hourly_prices

    # What the page shows: the paid periods the worker wrote (the replica's end lands as it stops).
    harness.wait_until(lambda: all(p.end for p in billing.parse(queue.read_file(billing.PERIODS_PATH))), 60,
                       "the paid periods to be closed")
    bill = hub.billing(space)
    tasks = queue.list()
    shown = billing.bill(billing.parse(queue.read_file(billing.PERIODS_PATH)), tasks, hourly_prices(api), space=space)
    return {
        "changes": bill["hardware_changes"],
        "gpu_s": bill["billed_seconds"].get(FLAVOR, 0.0),
        "cost": bill["totals"]["usd"],
        "shown": shown.billed_usd,
        "train_s": sum(t.gpu_seconds or 0.0 for t in tasks),
        "wall_s": wall,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--boot-delay", type=float, default=3.0, help="seconds the emulated Hub takes per restart")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--guide-app", nargs=2, metavar=("QUEUE", "WORK_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    harness.offline_env()
    if args.guide_app:
        return guide_app(*args.guide_app)

    from huggingface_hub import HfApi

    from scheduler.emulator import start_emulator

    with tempfile.TemporaryDirectory(prefix="bench-gpu-cost-") as tmp:
        hub = start_emulator(Path(tmp) / "hub", boot_delay=args.boot_delay, app_start_delay=0.1, fsync=False)
        try:
            api = HfApi(endpoint=hub.url, token=TOKEN)
            api.create_repo("demo/reviews", repo_type="dataset")
            api.upload_file(path_or_fileobj=dataset_csv(), path_in_repo="train.csv", repo_id="demo/reviews",
                            repo_type="dataset")
            worker_cmd = [sys.executable, "-m", "scheduler", "worker", "--queue", "{queue}",
                          "--callback", f"{TRAIN}:train", "--work-dir", str(Path(tmp) / "worker"),
                          "--poll", "0.2", "--lease", "60"]
            guide_cmd = [sys.executable, str(Path(__file__).resolve()), "--guide-app", "{queue}",
                         str(Path(tmp) / "guide")]
            results = {
                "worker": measure(hub, "demo/worker-bench", worker_cmd, args.tasks, args.epochs, args.timeout),
                "guide": measure(hub, "demo/guide-bench", guide_cmd, args.tasks, args.epochs, args.timeout),
            }
        finally:
            hub.stop()

    print(f"{args.tasks} tasks on {FLAVOR}, emulated boot delay {args.boot_delay:g}s, {args.epochs} epochs each")
    print(f"{'approach':<8} {'hw changes':>10} {'GPU-billed s':>13} {'training s':>11} {'billed USD':>10} "
          f"{'shown USD':>10} {'wall s':>8}")
    for name, r in results.items():
        print(f"{name:<8} {r['changes']:>10} {r['gpu_s']:>13.1f} {r['train_s']:>11.1f} {r['cost']:>10.5f} "
              f"{r['shown']:>10.5f} {r['wall_s']:>8.1f}")
    w, g = results["worker"], results["guide"]
    print(f"ratio guide/worker: hardware changes {g['changes'] / max(1, w['changes']):.1f}x, "
          f"GPU-billed seconds {g['gpu_s'] / max(1e-9, w['gpu_s']):.2f}x, billed USD {g['cost'] / max(1e-9, w['cost']):.2f}x")
    print(f"worker: cost shown / billed by the Hub (per started minute) = {w['shown'] / max(1e-9, w['cost']):.3f}")
    print("command: python bench/gpu_cost.py " + shlex.join(argv if argv is not None else sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
