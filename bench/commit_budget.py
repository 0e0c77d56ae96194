"""Commits per task, and the tasks per hour a queue sustains under the Hub's 128 commits per hour per
repository: this checkout's worker against the previous release's, on the same bursts, in one run.

For each burst size B and each version: a fresh emulator (its commit quota off, so nothing is throttled
while counting), a queue dataset, B tasks added in one call, one worker with default settings draining
them on this machine (a callback that returns at once), then the number of commits on the queue repo
(the add included). Tasks per hour = 128 x B / commits per burst. The previous release runs from a
temporary `git worktree` of `--before`. Heartbeat commits per hour of a long task come from each
version's default lease rules (the previous release renewed every lease/3 = 200 s).

    python bench/commit_budget.py [--bursts 1,20,100] [--before 6fcaf5e]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import harness  # bench/harness.py, next to this script

TOKEN = "hf_benchToken0123456789"
QUOTA = 128

ADD = textwrap.dedent("""
    import sys
    from scheduler.queue import TaskQueue
    from scheduler.tasks import Task
    url, token, endpoint, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    queue = TaskQueue.open(url, token=token, endpoint=endpoint)
    queue.init()
    queue.add_many([Task.new("bench/model", "bench/data", "t4-small", timeout_s=600) for _ in range(n)])
""")
CALLBACK = "def train(task, ctx):\n    return {'ok': True}\n"


def commits(api, repo: str) -> int:
    return len(api.list_repo_commits(repo, repo_type="dataset"))


def run_burst(source: Path, burst: int, work: Path) -> int:
    """Commits made on the queue repo by adding `burst` tasks and draining them, with the code in `source`."""
    from huggingface_hub import HfApi

    from scheduler.emulator import start_emulator

    work.mkdir(parents=True)
    (work / "cb.py").write_text(CALLBACK)
    env = {**os.environ, "PYTHONPATH": str(source), "HF_TOKEN": TOKEN}
    env.pop("SPACE_ID", None)
    with start_emulator(work / "hub", boot_delay=0.1, fsync=False, rules="commit_quota=off,request_quota=off") as hub:
        env["HF_ENDPOINT"] = hub.url
        api = HfApi(endpoint=hub.url, token=TOKEN)
        api.create_repo("bench/queue", repo_type="dataset", private=True)
        before = commits(api, "bench/queue")
        url = "hf://datasets/bench/queue"
        subprocess.run([sys.executable, "-c", ADD, url, TOKEN, hub.url, str(burst)], env=env, check=True, cwd=work)
        subprocess.run([sys.executable, "-m", "scheduler", "worker", "--queue", url, "--hardware", "local",
                        "--callback", f"{work / 'cb.py'}:train", "--work-dir", str(work / "w"), "--until-idle",
                        "--poll", "0.5"], env=env, check=True, cwd=work, stdout=subprocess.DEVNULL)
        return commits(api, "bench/queue") - before - 1  # minus the queue's creation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bursts", default="1,20,100")
    parser.add_argument("--before", default="6fcaf5e", help="the previous release's commit")
    args = parser.parse_args()
    harness.offline_env()
    bursts = [int(b) for b in args.bursts.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="bench-commits-"))
    old = tmp / "before"
    subprocess.run(["git", "-C", str(harness.ROOT), "worktree", "add", "--detach", str(old), args.before],
                   check=True, capture_output=True)
    try:
        rows = []
        for burst in bursts:
            for name, source in (("before", old), ("after", harness.ROOT)):
                start = time.monotonic()
                made = run_burst(source, burst, tmp / f"{name}-{burst}")
                rows.append((burst, name, made, time.monotonic() - start))
        print(f"{'burst':>5} {'version':>7} {'commits':>7} {'per task':>8} {'tasks/hour @128':>15}")
        for burst, name, made, seconds in rows:
            print(f"{burst:>5} {name:>7} {made:>7} {made / burst:>8.2f} {QUOTA * burst / made:>15.1f}")
        print()
        print("heartbeat commits per hour of one running task (default settings):")
        print("  before: every lease/3 = 200 s -> 18.0")
        from scheduler.lease import DEFAULT_HEARTBEAT_S

        print("  after, inside its own Space: 0 (the lease covers the task's timeout)")
        print(f"  after, any other worker: every {DEFAULT_HEARTBEAT_S:.0f} s -> {3600 / DEFAULT_HEARTBEAT_S:.1f}")
    finally:
        subprocess.run(["git", "-C", str(harness.ROOT), "worktree", "remove", "--force", str(old)], capture_output=True)


if __name__ == "__main__":
    main()
