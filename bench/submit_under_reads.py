"""How long a `/submit` answer waits behind readers of a slow Hub: the time from the task's commit
landing to the submitter getting its answer, with N clients reading `/tasks` at once, against the
same submit with no readers, in the same run.

The app is space_app/app.py served in this process (worker off) on a Hub queue in the emulator,
which adds `--latency` seconds to every file read (`/resolve/`), as a slow or far Hub does.

    python bench/submit_under_reads.py [--readers 6] [--latency 2] [--rounds 3]
"""

from __future__ import annotations

import harness  # bench/harness.py, next to this script

harness.offline_env()  # before anything imports huggingface_hub or gradio

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from tests.app.conftest import free_port, load_app_module  # noqa: E402

TOKEN = "hf_benchsubmittoken0123456789"
QUEUE = "hf://datasets/demo/bench-submit"


def timed_submit(client, emulator) -> tuple[float, float]:
    """(seconds until the commit landed, seconds until the answer came back)."""
    before = emulator.stats["commits"]
    landed: list[float] = []
    answered = threading.Event()

    def watch() -> None:
        while not answered.is_set() or not landed:
            if not landed and emulator.stats["commits"] > before:
                landed.append(time.perf_counter())
            time.sleep(0.02)

    start = time.perf_counter()
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    client.predict("bench/model", "bench/data", api_name="/submit")
    answer = time.perf_counter()
    answered.set()
    watcher.join(30)
    return landed[0] - start, answer - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=6)
    parser.add_argument("--latency", type=float, default=2.0, help="seconds added to every file read")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from gradio_client import Client

    from scheduler.access import Access
    from scheduler.dashboard import AppSettings
    from scheduler.emulator import start_emulator
    from scheduler.queue import TaskQueue

    work = Path(tempfile.mkdtemp(prefix="bench-submit-"))
    emulator = start_emulator(work / "hub", boot_delay=0.1, fsync=False)
    TaskQueue.open(QUEUE, token=TOKEN, endpoint=emulator.url).init()
    emulator.set_faults(latency_s=args.latency, latency_rate=1.0, paths="/resolve/")
    module = load_app_module()
    settings = AppSettings(queue_url=QUEUE, callback="train:train", endpoint=emulator.url, token=TOKEN,
                           work_dir=str(work / "work"), worker=False)
    app = module.SchedulerApp(settings, Access.from_env({}))
    blocks = app.build()
    port = free_port()
    app.launch(blocks, host="127.0.0.1", port=port, prevent_thread_lock=True, quiet=True)
    client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=False)
    timed_submit(client, emulator)  # warm-up: imports, connections, the first read

    alone, crowded = [], []  # (commit landed, answer came back), seconds after the call
    for _ in range(args.rounds):
        alone.append(timed_submit(client, emulator))
        readers = [client.submit("ALL", api_name="/tasks") for _ in range(args.readers)]
        time.sleep(0.3)  # the readers are in: one is reading, the others wait for it
        crowded.append(timed_submit(client, emulator))
        for reader in readers:
            reader.result(timeout=600)

    blocks.close()
    emulator.stop()
    def line(name: str, runs: list[tuple[float, float]]) -> float:
        answer = statistics.median(a for _, a in runs)
        lag = max(a - c for c, a in runs)
        print(f"{name}: answer median {answer:.2f}s; commit median {statistics.median(c for c, _ in runs):.2f}s; "
              f"answer after the commit, at most {lag:.2f}s")
        return answer

    print(f"rounds: {args.rounds}; readers: {args.readers}; latency per file read: {args.latency:.1f}s")
    base = line("alone (baseline)", alone)
    busy = line(f"with {args.readers} readers  ", crowded)
    print(f"ratio (median answer, with readers / alone): {busy / base:.2f}")


if __name__ == "__main__":
    main()
