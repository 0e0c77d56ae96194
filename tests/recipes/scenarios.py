"""Running `runner.py` from a test: a fresh emulator, one child process for a list of scenarios,
and the datasets the scenarios share (generated, nothing downloaded)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import TEST_TOKEN
from tests.support import ROOT, child_env

SUBJECTS = ["the film", "this movie", "the plot", "the acting", "the story", "the cast", "the script", "the ending"]
WORDS = {"pos": ["wonderful", "brilliant", "moving", "superb", "charming", "lovely"],
         "neg": ["terrible", "boring", "awful", "dull", "tedious", "dreadful"],
         "neutral": ["fine", "okay", "average", "ordinary", "passable", "middling"]}
ADVERBS = ["really", "truly", "quite", "very", "simply", "rather"]
EXTRA_WORDS = [w for words in WORDS.values() for w in words]


def review_rows(n: int, labels=("neg", "pos", "neutral"), seed: int = 0) -> list[dict]:
    """`n` one-sentence reviews cycling through `labels`, the label carried by the adjective."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = labels[i % len(labels)]
        rows.append({"text": f"{rng.choice(SUBJECTS)} was {rng.choice(ADVERBS)} {rng.choice(WORDS[label])}",
                     "label": label})
    rng.shuffle(rows)
    return rows


def csv_dataset(repo: str, train: list[dict], validation: list[dict] | None = None, fmt: str = "csv") -> dict:
    ext = {"csv": "csv", "parquet": "parquet", "jsonl": "jsonl"}[fmt]
    files = {f"train.{ext}": {"rows": train, "format": fmt}}
    if validation is not None:
        files[f"validation.{ext}"] = {"rows": validation, "format": fmt}
    return {"repo": repo, "files": files}


def run_scenarios(tmp: Path, spec: dict, timeout: float = 900.0) -> tuple[dict, float]:
    """Start an emulator, run the runner on `spec` in a child process; (results by id, seconds)."""
    from scheduler.emulator import start_emulator

    spec = {"extra_words": EXTRA_WORDS, **spec}
    tmp.mkdir(parents=True, exist_ok=True)
    spec_file, out_file = tmp / "spec.json", tmp / "out.json"
    spec_file.write_text(json.dumps(spec), encoding="utf-8")
    handle = start_emulator(tmp / "hub", fsync=False)
    started = time.monotonic()
    try:
        env = child_env(HF_ENDPOINT=handle.url, HF_TOKEN=TEST_TOKEN, HF_HOME=str(tmp / "hf-home"),
                        OMP_NUM_THREADS="1", HF_HUB_DISABLE_PROGRESS_BARS="1")
        done = subprocess.run([sys.executable, "-m", "tests.recipes.runner", str(spec_file), str(out_file)],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    finally:
        handle.stop()
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise AssertionError(f"the scenario runner failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(out_file.read_text(encoding="utf-8")), seconds
