"""Latency from `TaskQueue.add()` to the Space's hardware request, per wake path, on the emulator.

- direct: the queue knows its Space (`scheduler.open_queue(url, space=...)`), so `add()` requests the flavor;
- webhook: a worker idles on cpu-basic with a long poll; the emulator delivers the registered webhook
  after the commit to `scheduler.wake.mount_webhook` over HTTP, which wakes it;
- polling: the same worker, no webhook: it finds the task at its next poll.

The request time is the emulator's own record (its timeline entry for the requested flavor), the
start is taken just before `add()`. The baseline is the `add()` alone (its commit), measured in the
same run. Submits land at a random point of the worker's poll cycle. The Hub's delay in delivering a webhook is not modelled.

    python bench/wake_latency.py [--reps 5] [--poll 5]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import harness  # bench/harness.py, next to this script

TOKEN = "bench-token-not-secret"
SPACE = "demo/scheduler"
QUEUE = "hf://datasets/demo/queue"
FLAVOR = "t4-small"
SECRET = "bench-webhook-secret"


def noop(task, ctx):
    """The callback the bench's worker runs: the work itself is not what is measured."""
    return {}


def _requested_at(hub, after: float, timeout: float = 120.0) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in hub.billing(SPACE)["timeline"]:
            if entry["t"] >= after and entry["requested"] == FLAVOR:
                return entry["t"]
        time.sleep(0.005)
    raise RuntimeError("no hardware request seen")


def _serve_webhook(on_change) -> tuple[str, object]:
    import uvicorn
    from fastapi import FastAPI

    from scheduler.emulator.server import bind_socket
    from scheduler.wake import mount_webhook

    app = FastAPI()
    mount_webhook(app, on_change, secret=SECRET, queue_repo="demo/queue")
    sock = bind_socket("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    harness.wait_until(lambda: server.started, 15, "the webhook server")
    return f"http://127.0.0.1:{sock.getsockname()[1]}/webhooks/queue", server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--poll", type=float, default=5.0, help="the worker's poll interval (seconds)")
    args = parser.parse_args()
    harness.offline_env()

    from huggingface_hub import HfApi

    from scheduler import open_queue
    from scheduler.emulator import start_emulator
    from scheduler.hardware import SpaceController
    from scheduler.queue import TaskQueue
    from scheduler.settings import WorkerSettings, build_worker
    from scheduler.tasks import Task

    results: dict[str, list[float]] = {"add() alone": [], "direct": [], "webhook": [], "polling": []}
    data = Path(tempfile.mkdtemp(prefix="bench-wake-"))
    with start_emulator(data / "hub", boot_delay=0.2, fsync=False) as hub:
        api = HfApi(endpoint=hub.url, token=TOKEN)
        api.create_repo(SPACE, repo_type="space", space_sdk="gradio")
        plain = TaskQueue.open(QUEUE, token=TOKEN, endpoint=hub.url)
        plain.init()
        waking = open_queue(QUEUE, token=TOKEN, endpoint=hub.url, space=SPACE)
        harness.wait_until(lambda: harness.settled(api, SPACE), what="the Space idle on cpu-basic")

        def new_task() -> Task:
            return Task.new("demo/model", "demo/data", FLAVOR, timeout_s=600)

        for _ in range(args.reps):
            start = time.time()
            plain.add(new_task(), wake=False)
            results["add() alone"].append(time.time() - start)
            plain.cancel(plain.list("PENDING")[0].id)

            start = time.time()
            task = waking.add(new_task())
            results["direct"].append(_requested_at(hub, start) - start)
            plain.cancel(task.id)
            api.request_space_hardware(SPACE, "cpu-basic")
            harness.wait_until(lambda: harness.settled(api, SPACE), what="the Space idle on cpu-basic")

        settings = WorkerSettings(queue=QUEUE, callback=f"{Path(__file__).resolve()}:noop", space=SPACE, token=TOKEN,
                                  endpoint=hub.url, work_dir=str(data / "work"), poll_s=args.poll, lease_s=60,
                                  retry_delay_s=0)
        worker = build_worker(settings, queue=plain, controller=SpaceController(SPACE, api=api, poll_s=0.1))
        worker.start_thread()
        url, server = _serve_webhook(lambda sha: worker.wake())
        # Registered as deploy does; the emulator delivers it after each commit, as the Hub would.
        hook = api.create_webhook(url=url, watched=[{"type": "dataset", "name": "demo/queue"}], domains=["repo"],
                                  secret=SECRET)
        try:
            for path in ("webhook", "polling"):
                if path == "polling":
                    api.disable_webhook(hook.id)
                for _ in range(args.reps):
                    start = time.time()
                    task = plain.add(new_task(), wake=False)
                    results[path].append(_requested_at(hub, start) - start)
                    harness.wait_until(lambda: plain.get(task.id).is_terminal and harness.settled(api, SPACE), what="the task done and the Space idle")
                    # Submit at a random point of the worker's poll cycle, as a person would.
                    time.sleep(random.uniform(0.3, args.poll))
        finally:
            worker.stop("bench over", wait_s=30)
            server.should_exit = True

    base = statistics.median(results["add() alone"])
    print(f"wake latency, add() to hardware request, {args.reps} reps, worker poll {args.poll:g}s")
    print("| path | median s | max s | ratio to add() alone |")
    print("|---|---|---|---|")
    for name, values in results.items():
        med = statistics.median(values)
        print(f"| {name} | {med:.3f} | {max(values):.3f} | {med / base:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
