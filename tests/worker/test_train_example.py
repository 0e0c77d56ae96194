"""space_app/train.py really trains on a Hub dataset and uploads a model, through the worker."""

from __future__ import annotations

import io
import random
from pathlib import Path

from huggingface_hub import HfApi

from scheduler.callbacks import tail_log
from scheduler.settings import WorkerSettings, build_worker
from scheduler.tasks import Status, Task

TRAIN = Path(__file__).resolve().parents[2] / "space_app" / "train.py"
TOKEN = "hf_testtoken0123456789"


def reviews_csv(n: int = 300) -> bytes:
    rng = random.Random(1)
    good = ["great", "lovely", "superb", "fun", "moving", "brilliant"]
    bad = ["awful", "boring", "dull", "broken", "tedious", "bad"]
    filler = ["the", "film", "plot", "actors", "music", "was", "and", "really", "quite", "ending"]
    out = io.StringIO()
    out.write("text,label\n")
    for _ in range(n):
        label = rng.choice(["pos", "neg"])
        words = rng.sample(filler, 4) + rng.sample(good if label == "pos" else bad, 2)
        rng.shuffle(words)
        out.write(f"\"{' '.join(words)}, truly\",{label}\n")
    return out.getvalue().encode()


def test_the_example_callback_trains_uploads_a_model_and_can_fine_tune_it_again(emulator, tmp_path):
    api = HfApi(endpoint=emulator.url, token=TOKEN)
    api.create_repo("demo/reviews", repo_type="dataset")
    api.upload_file(path_or_fileobj=reviews_csv(), path_in_repo="train.csv", repo_id="demo/reviews",
                    repo_type="dataset")
    worker = build_worker(WorkerSettings(queue=str(tmp_path / "queue"), callback=f"{TRAIN}:train", executor="local",
                                         token=TOKEN, endpoint=emulator.url, work_dir=str(tmp_path / "work"),
                                         poll_s=0.2))
    queue = worker.queue
    first = queue.add(Task.new("demo/tiny-bow", "demo/reviews", params={"epochs": 5}))
    worker.run(until_idle=True)
    first = queue.get(first.id)
    assert first.status is Status.DONE, first.error
    repo = first.result["repo_id"]
    assert repo == f"demo/tiny-bow-finetuned-{first.id}"
    assert first.result["val_accuracy"] > 0.9 and first.result["epochs"] == 5
    files = set(api.list_repo_files(repo))
    assert {"model.npz", "vocab.json", "metrics.json", "README.md"} <= files
    card = Path(api.hf_hub_download(repo, "README.md")).read_text()
    assert "base_model: demo/tiny-bow" in card and "demo/reviews" in card
    assert any("training from scratch" in line for line in tail_log(first.id, 50, worker.work_dir))

    second = queue.add(Task.new(repo, "demo/reviews", params={"epochs": 1}))
    worker.run(until_idle=True)
    second = queue.get(second.id)
    assert second.status is Status.DONE, second.error
    assert any(f"fine-tuning {repo}" in line for line in tail_log(second.id, 50, worker.work_dir))
    assert second.result["val_accuracy"] > 0.9
