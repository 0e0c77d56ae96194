"""What the emulator's real-Hub profile costs: start time and request time with every rule on,
against the same emulator with every rule off (`rules="all=off"`), measured in the same run.

    python bench/emulator_rules.py [--starts 20] [--commits 60]

Prints the median start of `start_emulator` (the test fixture's path) and the median time of a
queue-style round (HEAD for the head sha, download at that sha, commit with parent) for both, and
their ratios. Rules on, every answer goes through the request-quota count and gets its `Date`,
`RateLimit` and `RateLimit-Policy` headers, and every commit through the commit-quota window
(with a limit raised above the run's commits, so none is refused).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import harness

harness.offline_env()


def starts(n: int, profiles: dict[str, str]) -> dict[str, float]:
    """Median start time per profile; the profiles take turns so that load on the machine hits both."""
    from scheduler.emulator import start_emulator

    times: dict[str, list[float]] = {name: [] for name in profiles}
    for _ in range(n):
        for name, rules in profiles.items():
            t0 = time.perf_counter()
            hub = start_emulator(tempfile.mkdtemp(prefix="bench-rules-"), boot_delay=0.2, fsync=False, rules=rules)
            times[name].append(time.perf_counter() - t0)
            hub.stop()
    return {name: statistics.median(t) for name, t in times.items()}


def rounds(n: int, profiles: dict[str, str]) -> dict[str, float]:
    """Median HEAD + download + commit per profile, one emulator each, rounds taking turns."""
    from huggingface_hub import HfApi, hf_hub_url

    from scheduler.emulator import start_emulator

    hubs = {name: start_emulator(tempfile.mkdtemp(prefix="bench-rules-"), boot_delay=0.2, fsync=False, rules=rules)
            for name, rules in profiles.items()}
    repo = "demo/queue"
    try:
        clients = {}
        for name, hub in hubs.items():
            api = HfApi(endpoint=hub.url, token="hf_bench_token_0123")
            api.create_repo(repo, repo_type="dataset")
            api.upload_file(path_or_fileobj=b"id\n", path_in_repo="tasks.csv", repo_id=repo, repo_type="dataset")
            clients[name] = (api, hf_hub_url(repo, "tasks.csv", repo_type="dataset", endpoint=hub.url))
        times: dict[str, list[float]] = {name: [] for name in profiles}
        for i in range(n):
            for name, (api, url) in clients.items():
                t0 = time.perf_counter()
                meta = api.get_hf_file_metadata(url=url)
                api.hf_hub_download(repo, "tasks.csv", repo_type="dataset", revision=meta.commit_hash)
                # Content of its own per profile: the client's cache keys blobs by content, not by endpoint.
                api.upload_file(path_or_fileobj=f"id\n{name}-{i}\n".encode(), path_in_repo="tasks.csv",
                                repo_id=repo, repo_type="dataset", parent_commit=meta.commit_hash)
                times[name].append(time.perf_counter() - t0)
        return {name: statistics.median(t) for name, t in times.items()}
    finally:
        for hub in hubs.values():
            hub.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--starts", type=int, default=20, help="emulator starts per profile")
    parser.add_argument("--commits", type=int, default=60, help="read-modify-commit rounds per profile")
    args = parser.parse_args()
    profiles = {"on": f"commit_limit={args.commits + 10}", "off": "all=off"}
    started, served = starts(args.starts, profiles), rounds(args.commits, profiles)
    start_on, start_off = started["on"], started["off"]
    round_on, round_off = served["on"], served["off"]
    print("| measure | rules on | rules off (baseline, same run) | ratio |")
    print("|---|---|---|---|")
    print(f"| `start_emulator` (median of {args.starts}) | {start_on * 1000:.1f} ms | {start_off * 1000:.1f} ms "
          f"| {start_on / start_off:.2f} |")
    print(f"| HEAD + download + commit (median of {args.commits}) | {round_on * 1000:.1f} ms "
          f"| {round_off * 1000:.1f} ms | {round_on / round_off:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
