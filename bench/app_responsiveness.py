"""How much a training task slows the Space app down: submit latency through gradio_client while a
task trains, against a submit with the worker idle, in the same run.

The app is space_app/app.py served in this process with its worker thread (local hardware, a folder
queue); the training is a CPU-bound numpy callback in the worker's child process, as a real one is.

    python bench/app_responsiveness.py [--submits 20] [--train-seconds 40]
"""

from __future__ import annotations

import harness  # bench/harness.py, next to this script

harness.offline_env()  # before anything imports huggingface_hub or gradio

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from tests.app.conftest import free_port, load_app_module  # noqa: E402


def burn(task, ctx):
    """Matrix products for params.seconds: a training step's CPU load without its data."""
    import numpy as np

    seconds = float(task.params.get("seconds", 0))
    a = np.random.default_rng(0).random((400, 400))
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        a = np.tanh(a @ a.T / 400)
        ctx.progress((time.monotonic() - start) / seconds, "burning")
        if ctx.should_stop():
            break
    return {"seconds": seconds}


def timed_submit(client, seconds: float) -> tuple[float, str]:
    start = time.perf_counter()
    result = client.predict("bench/model", "bench/data", "t4-small", f'{{"seconds": {seconds}}}', 0, 1, 600,
                            api_name="/submit")
    return time.perf_counter() - start, result["task_id"]


def wait_status(client, task_id: str, statuses: set[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tasks = {t["id"]: t for t in client.predict("ALL", api_name="/tasks")}
        if tasks[task_id]["status"] in statuses:
            return
        time.sleep(0.2)
    raise SystemExit(f"{task_id} did not reach {statuses}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submits", type=int, default=20)
    parser.add_argument("--train-seconds", type=float, default=40.0)
    args = parser.parse_args()

    from gradio_client import Client

    from scheduler.access import Access
    from scheduler.dashboard import AppSettings

    work = Path(tempfile.mkdtemp(prefix="bench-app-"))
    module = load_app_module()
    # A long poll: the worker looks at the queue only when a submit wakes it.
    settings = AppSettings(queue_url=str(work / "queue"), callback=f"{Path(__file__).resolve()}:burn",
                           work_dir=str(work / "work"), worker_args=("--poll", "60", "--lease", "120"))
    app = module.SchedulerApp(settings, Access.from_env({}))
    blocks = app.build()
    app.start_worker(signals=False)
    port = free_port()
    app.launch(blocks, host="127.0.0.1", port=port, prevent_thread_lock=True, quiet=True)
    client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=False)
    timed_submit(client, 0)  # warm-up: first calls pay for imports and connections

    idle: list[float] = []
    for _ in range(args.submits):
        latency, task_id = timed_submit(client, 0)
        idle.append(latency)
        wait_status(client, task_id, {"DONE"})  # the next one is measured with the worker idle again

    _, training = timed_submit(client, args.train_seconds)
    wait_status(client, training, {"RUNNING"})
    busy: list[float] = []
    for _ in range(args.submits):
        latency, _ = timed_submit(client, 0)
        busy.append(latency)
        time.sleep(0.3)
    still_training = {t["id"]: t for t in client.predict("ALL", api_name="/tasks")}[training]["status"] == "RUNNING"

    app.worker.stop("bench over", wait_s=30)
    blocks.close()
    med_idle, med_busy = statistics.median(idle), statistics.median(busy)
    p90 = lambda xs: sorted(xs)[int(0.9 * (len(xs) - 1))]  # noqa: E731
    print(f"submits per phase: {args.submits}; training task still RUNNING at the end: {still_training}")
    print(f"worker idle:     median {med_idle * 1000:.1f} ms, p90 {p90(idle) * 1000:.1f} ms")
    print(f"while training:  median {med_busy * 1000:.1f} ms, p90 {p90(busy) * 1000:.1f} ms")
    print(f"ratio (median, training / idle): {med_busy / med_idle:.2f}")


if __name__ == "__main__":
    main()
