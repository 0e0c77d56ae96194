"""Queue benchmarks, each a ratio against a baseline measured in the same run.

1. `add` under 16-process contention through HubStore against the emulator, vs the raw
   `create_commit` rate of the same emulator with one client and no contention.
2. `claim` + `complete` on a 100k-row tasks.csv, vs one `pandas.read_csv` + `DataFrame.to_csv`
   of the same file (target: at most 1.5); once with finished rows alike, once with every finished
   row different (its own result, GPU time, cost, lease id and log), which costs the reader more.

    python bench/queue.py [--processes 16] [--per-process 25] [--rows 100000] [--only-big]
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named like the stdlib's `queue`: drop its folder from the path before anything imports it.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import io
import os
import statistics
import subprocess
import tempfile
import time

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")

TOKEN = "hf_benchtoken0123456789"

ADDER = """
import sys
from scheduler.queue import TaskQueue
from scheduler.tasks import Task
url, endpoint, n, lock = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
queue = TaskQueue.open(url, token="%s", endpoint=endpoint, local_lock=lock)
queue.table()
sys.stdout.write("ready\\n"); sys.stdout.flush(); sys.stdin.readline()
for _ in range(n):
    queue.add(Task.new("acme/model", "acme/data", "t4-small"))
print(queue.stats["conflicts"])
""" % TOKEN


def raw_commit_rate(emulator, n: int) -> float:
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(endpoint=emulator.url, token=TOKEN)
    api.create_repo("demo/raw", repo_type="dataset", exist_ok=True)
    start = time.perf_counter()
    for i in range(n):
        api.create_commit("demo/raw", [CommitOperationAdd("tasks.csv", f"row {i}\n".encode())],
                          commit_message="raw", repo_type="dataset")
    return n / (time.perf_counter() - start)


def contended_add_rate(emulator, processes: int, per_process: int, local_lock: bool) -> tuple[float, int]:
    from scheduler.queue import TaskQueue

    url = f"hf://datasets/demo/contended-{int(local_lock)}"
    TaskQueue.open(url, token=TOKEN, endpoint=emulator.url).init()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, "-c", ADDER, url, emulator.url, str(per_process), "1" if local_lock else "0"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env) for _ in range(processes)]
    for proc in procs:  # every process imported and connected before the clock starts
        assert proc.stdout.readline().strip() == "ready"
    start = time.perf_counter()
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    conflicts = 0
    for proc in procs:
        out, _ = proc.communicate(timeout=1800)
        assert proc.returncode == 0
        conflicts += int(out.strip().splitlines()[-1])
    elapsed = time.perf_counter() - start
    assert len(TaskQueue.open(url, token=TOKEN, endpoint=emulator.url).list()) == processes * per_process
    return processes * per_process / elapsed, conflicts


def finished_tasks(rows: int, realistic: bool):
    """rows - 1 DONE tasks and one PENDING. `realistic`: every finished row differs, as in a real queue (its
    own result, GPU time, cost and lease id, and a three-line log), so no column has few distinct cells."""
    import random

    from scheduler.tasks import Status, Task

    rng = random.Random(0)
    template = Task.new("acme/model", "acme/data", "t4-small", params={"epochs": 3, "lr": 5e-5})
    done = template.transition(Status.RUNNING).transition(Status.DONE, result={"loss": 0.1}, gpu_seconds=12.5)

    def finished(i: int) -> Task:
        if not realistic:
            return done.replace(id=f"t{i:07d}")
        seconds = round(rng.uniform(1, 5000), 3)
        return done.replace(id=f"t{i:07d}", result={"loss": rng.random(), "accuracy": rng.random()},
                            gpu_seconds=seconds, cost_usd=round(seconds * 0.000167, 6),
                            lease_id=f"{rng.getrandbits(64):016x}",
                            log=f"epoch 1 loss {rng.random():.4f}\nepoch 2 loss {rng.random():.4f}\ndone")

    return [finished(i) for i in range(rows - 1)], template


def big_queue_ratio(rows: int, realistic: bool = False, repeats: int = 3) -> dict:
    import pandas as pd

    from scheduler import codec
    from scheduler.queue import TaskQueue

    folder = Path(tempfile.mkdtemp(prefix="bench-queue-"))
    finished, template = finished_tasks(rows, realistic)
    table = codec.Table().appended(finished + [template])
    (folder / "tasks.csv").write_bytes(codec.dump(table))
    size_mb = (folder / "tasks.csv").stat().st_size / 1e6

    baseline, ours, ours_memory = [], [], []
    for _ in range(repeats):
        start = time.perf_counter()
        frame = pd.read_csv(folder / "tasks.csv", dtype=str, keep_default_na=False)
        frame.to_csv(io.StringIO(), index=False)
        baseline.append(time.perf_counter() - start)

        queue = TaskQueue.open(str(folder))
        start = time.perf_counter()
        task = queue.claim("bench", 600)
        queue.complete(task.id, task.lease_id, {"ok": 1})
        ours.append(time.perf_counter() - start)
        TaskQueue.open(str(folder)).transact(  # reset the one row for the next repeat
            lambda t, now: __import__("scheduler.queue", fromlist=["Change"]).Change(
                t.with_task(t.find(template.id), template), None), "reset")

        from scheduler.stores import MemoryStore
        store = MemoryStore(files={"tasks.csv": (folder / "tasks.csv").read_bytes()})
        queue = TaskQueue(store)
        start = time.perf_counter()
        task = queue.claim("bench", 600)
        queue.complete(task.id, task.lease_id, {"ok": 1})
        ours_memory.append(time.perf_counter() - start)
    base = statistics.median(baseline)
    return {"rows": rows, "size_mb": size_mb, "pandas_s": base, "file_s": statistics.median(ours),
            "memory_s": statistics.median(ours_memory)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--processes", type=int, default=16)
    parser.add_argument("--per-process", type=int, default=25)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--only-big", action="store_true", help="only the 100k-row claim + complete measure")
    args = parser.parse_args()

    from scheduler.emulator.server import start_emulator

    print(f"command: python bench/queue.py --processes {args.processes} --per-process {args.per_process} --rows {args.rows}"
          + (" --only-big" if args.only_big else ""))
    if not args.only_big:
        with start_emulator(tempfile.mkdtemp(prefix="bench-hub-"), fsync=True) as emulator:
            raw = raw_commit_rate(emulator, 100)
            print(f"raw create_commit, 1 client, no contention: {raw:8.1f} commits/s")
            for lock in (False, True):
                rate, conflicts = contended_add_rate(emulator, args.processes, args.per_process, lock)
                label = "with the local lock" if lock else "compare-and-swap only"
                print(f"add, {args.processes} processes ({label}): {rate:8.1f} adds/s  ratio to raw commits: "
                      f"{rate / raw:.2f}  (412 conflicts retried: {conflicts})")
    for realistic in (False, True):
        big = big_queue_ratio(args.rows, realistic)
        kind = "every finished row different (results, logs, lease ids)" if realistic else "finished rows alike"
        print(f"{big['rows']} rows, {kind} ({big['size_mb']:.1f} MB): pandas read_csv + to_csv {big['pandas_s']:.3f}s")
        print(f"  claim + complete, folder store: {big['file_s']:.3f}s  ratio {big['file_s'] / big['pandas_s']:.2f} "
              "(target <= 1.5)")
        print(f"  claim + complete, memory store: {big['memory_s']:.3f}s  ratio {big['memory_s'] / big['pandas_s']:.2f}")


if __name__ == "__main__":
    main()
