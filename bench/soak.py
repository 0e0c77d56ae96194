"""Soak: many tasks with a fast callback through a worker process, against a Hub emulator with faults on.

    python bench/soak.py --tasks 1000            # the full size quoted in RELIABILITY.md
    python bench/soak.py --tasks 100 --json      # what the CI test runs (tests/reliability/test_soak.py)

A feeder keeps a few tasks pending at a time (as submitters would), an archiver moves finished rows
out of tasks.csv every few seconds, and the worker's resident memory is sampled from /proc. Prints
how every task ended, the largest tasks.csv seen, the worker's RSS over the run and the faults injected.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ACTORS = ROOT / "tests" / "reliability" / "actors.py"
TOKEN = "hf_soakToken0123456789abcdef"
URL = "hf://datasets/demo/soak"
FAULTS = dict(error_rate=0.05, commit_429_every=10, retry_after_s=0.2, drop_after_commit_rate=0.05, seed=21)


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def soak(tasks: int, data_dir: Path, *, batch: int = 10, fail_every: int = 10, archive_every_s: float = 3.0,
         timeout_s: float = 3600.0, say=lambda *_: None) -> dict:
    import httpx
    from huggingface_hub import HfApi

    from scheduler import codec
    from scheduler.emulator.server import spawn_emulator
    from scheduler.errors import Unavailable
    from scheduler.queue import TaskQueue
    from scheduler.tasks import Status, Task

    # Hundreds of tasks through one queue in minutes: far past the Hub's 128 commits an hour and its
    # requests per 5 minutes. The soak measures faults, archiving and memory; the quotas have their
    # own tests (tests/emulator/test_quotas.py).
    hub = spawn_emulator(data_dir / "hub", boot_delay=0.2, rules="quota=off", **FAULTS)
    worker = None
    started = time.monotonic()
    try:
        queue = TaskQueue.open(URL, token=TOKEN, endpoint=hub.url)
        queue.init()
        env = dict(os.environ, HF_ENDPOINT=hub.url, HF_TOKEN=TOKEN,
                   PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        worker = subprocess.Popen(
            [sys.executable, "-m", "scheduler", "worker", "--hardware", "local", "--queue", URL,
             "--callback", f"{ACTORS}:quick", "--work-dir", str(data_dir / "work"), "--lease", "120",
             "--poll", "0.2", "--retry-delay", "0", "--stop-grace", "1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        added = 0
        max_rows = max_bytes = 0
        rss: list[tuple[int, int]] = []  # (tasks finished so far, KiB)
        last_archive = time.monotonic()
        archived = 0
        finished = 0
        while finished < tasks:
            if time.monotonic() - started > timeout_s:
                raise TimeoutError(f"soak did not finish in {timeout_s}s ({finished}/{tasks})")
            try:
                snapshot = queue.store.read()
            except Unavailable:  # an injected fault; the queue's own operations wait these out
                time.sleep(0.2)
                continue
            table = codec.parse(snapshot.data)
            max_rows, max_bytes = max(max_rows, len(table)), max(max_bytes, len(snapshot.data or b""))
            live = [t for t in table.tasks() if not t.is_terminal]
            # Only finished rows leave tasks.csv; counting archive()'s return instead would miss the rows of
            # an archive commit whose answer was lost (the retry finds nothing left to move and returns 0).
            finished = added - len(live)
            if len(live) < batch and added < tasks:
                n = min(batch, tasks - added)
                queue.add_many([Task.new("acme/model", "acme/data", "cpu-upgrade", id=f"s{added + i:05d}", max_attempts=1,
                                         params={"n": added + i, **({"fail": "soak"} if (added + i) % fail_every == fail_every - 1 else {})})
                                for i in range(n)])
                added += n
            if time.monotonic() - last_archive >= archive_every_s:
                archived += queue.archive(timedelta(0))
                last_archive = time.monotonic()
                kib = rss_kib(worker.pid)
                if kib is not None:
                    rss.append((finished, kib))
                say(f"{finished}/{tasks} finished, tasks.csv {len(table)} rows, worker RSS {kib} KiB")
            time.sleep(0.5)
        archived += queue.archive(timedelta(0))
        kib = rss_kib(worker.pid)
        if kib is not None:
            rss.append((finished, kib))
        # Every task, from the queue and every archive file.
        api = HfApi(endpoint=hub.url, token=TOKEN)
        # The final count is taken on a healthy Hub: the faults were for the run, not for the audit.
        httpx.post(f"{hub.url}/_emulator/faults", json={"error_rate": 0, "commit_429_every": 0,
                                                        "drop_after_commit_rate": 0}, timeout=10).raise_for_status()
        version = queue.store.read().version
        everything = list(queue.list())
        for path in api.list_repo_files("demo/soak", repo_type="dataset"):
            if path.startswith("archive/"):
                everything += codec.parse(queue.store.read_at(path, version), path).tasks()
        stats = httpx.get(f"{hub.url}/_emulator/stats", timeout=10).json()
        ids = [t.id for t in everything]
        warm = next((k for n, k in rss if n >= tasks // 5), rss[0][1] if rss else None)
        return {
            "tasks": tasks, "seen": len(ids), "unique": len(set(ids)),
            "done": sum(t.status is Status.DONE for t in everything),
            "failed": sum(t.status is Status.FAILED for t in everything),
            "failed_without_reason": sum(t.status is Status.FAILED and not t.error for t in everything),
            "other": sum(t.status not in (Status.DONE, Status.FAILED) for t in everything),
            "run_twice": sum(t.attempts != 1 for t in everything),
            "max_rows": max_rows, "max_bytes": max_bytes, "archived": archived,
            "rss_kib_first": rss[0][1] if rss else None, "rss_kib_warm": warm, "rss_kib_last": rss[-1][1] if rss else None,
            "rss_kib_max": max((k for _, k in rss), default=None),
            "seconds": round(time.monotonic() - started, 1),
            "faults": {k: v for k, v in stats.items() if k.startswith("fault") or k == "requests"},
            "worker_alive": worker.poll() is None,
        }
    finally:
        if worker is not None and worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
        hub.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
    os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="soak-hf-home-"))
    random.seed(0)
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        result = soak(args.tasks, Path(tmp), say=(lambda m: None) if args.json else (lambda m: print(m, flush=True)))
    print(json.dumps(result, indent=None if args.json else 1))


if __name__ == "__main__":
    main()
