"""A tiny model and dataset made on the spot, for demos and tests that cannot download anything.

Nothing here comes from the Hub: the dataset is generated from templates with a fixed seed, the
tokenizer is a word-level vocabulary built from that dataset, and the models are randomly
initialised from small configs (hidden size 32, 2 layers, a few hundred KB of weights), so a
fine-tuning run takes seconds on a CPU and still shows a falling loss.

`seed_demo_repos(api, owner)` uploads them to whatever Hub `api` points at (the emulator, usually).
"""

from __future__ import annotations

import csv
import io
import json
import random
import tempfile
from pathlib import Path

DATASET_NAME = "tiny-sentiment"
CLASSIFIER_NAME = "tiny-bert-sentiment"
CAUSAL_LM_NAME = "tiny-gpt2"
LABELS = ("negative", "positive")
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[BOS]", "[EOS]")

_SUBJECTS = ["the film", "this movie", "the plot", "the acting", "the soundtrack", "the ending",
             "the story", "the cast", "the script", "the director", "the camera work", "the dialogue"]
_POSITIVE = ["wonderful", "brilliant", "moving", "delightful", "superb", "charming", "gripping", "lovely"]
_NEGATIVE = ["terrible", "boring", "awful", "dull", "clumsy", "tedious", "painful", "dreadful"]
_ADVERBS = ["really", "truly", "quite", "very", "simply", "rather"]
_TAILS = ["", " from start to finish", " in every scene", " and i would say so again", " overall"]


# ---------------------------------------------------------------- data


def make_rows(n: int = 240, seed: int = 0) -> list[dict]:
    """`n` short reviews, half of each label, whose sentiment is carried by a single adjective."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = LABELS[i % 2]
        adjective = rng.choice(_POSITIVE if label == "positive" else _NEGATIVE)
        text = f"{rng.choice(_SUBJECTS)} was {rng.choice(_ADVERBS)} {adjective}{rng.choice(_TAILS)}"
        rows.append({"text": text, "label": label})
    rng.shuffle(rows)
    return rows


def rows_to_csv(rows: list[dict], columns: list[str] | None = None) -> bytes:
    columns = columns or list(rows[0])
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


# ---------------------------------------------------------------- tokenizer and models


def make_tokenizer(texts: list[str]):
    """A word-level tokenizer over every word in `texts` (plus the special tokens)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = sorted({w for text in texts for w in text.lower().split()})
    vocab = {token: i for i, token in enumerate(list(SPECIAL_TOKENS) + words)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]", bos_token="[BOS]", eos_token="[EOS]", model_max_length=64,
    )


def make_classifier(tokenizer, labels=LABELS, seed: int = 0):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id,
        num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    return BertForSequenceClassification(config)


def make_causal_lm(tokenizer, seed: int = 0):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=64,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return GPT2LMHeadModel(config)


def _card(kind: str, extra: str = "") -> str:
    return (f"---\nlibrary_name: transformers\ntags:\n- tiny\n- random-init\n---\n\n"
            f"A randomly initialised {kind} (hidden size 32, 2 layers) with a word-level tokenizer built "
            f"from the `{DATASET_NAME}` dataset. It knows nothing until fine-tuned.{extra}\n")


def save_tiny_models(folder: Path, rows: list[dict] | None = None) -> dict[str, Path]:
    """Write the classifier and the causal LM (each with its tokenizer) under `folder`."""
    rows = rows or make_rows()
    tokenizer = make_tokenizer([r["text"] for r in rows])
    out = {}
    for name, model, kind in ((CLASSIFIER_NAME, make_classifier(tokenizer), "BERT text classifier"),
                              (CAUSAL_LM_NAME, make_causal_lm(tokenizer), "GPT-2 causal language model")):
        path = Path(folder) / name
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
        (path / "README.md").write_text(_card(kind), encoding="utf-8")
        out[name] = path
    return out


# ---------------------------------------------------------------- upload


def seed_demo_repos(api, owner: str, *, private: bool = False) -> dict[str, str]:
    """Create (or update) the tiny demo repos under `owner` on `api`'s Hub and return their ids:
    `{"dataset": OWNER/tiny-sentiment, "classifier": OWNER/tiny-bert-sentiment,
    "causal_lm": OWNER/tiny-gpt2}`. Idempotent: the content is deterministic, so seeding again
    leaves the repos as they were."""
    rows = make_rows()
    ids = {"dataset": f"{owner}/{DATASET_NAME}", "classifier": f"{owner}/{CLASSIFIER_NAME}",
           "causal_lm": f"{owner}/{CAUSAL_LM_NAME}"}
    with tempfile.TemporaryDirectory(prefix="tiny-demo-") as tmp:
        data = Path(tmp) / "dataset"
        data.mkdir()
        (data / "train.csv").write_bytes(rows_to_csv(rows))
        (data / "README.md").write_text(
            f"---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n    path: train.csv\n---\n\n"
            f"{len(rows)} generated one-sentence reviews, labelled {' / '.join(LABELS)} by their adjective.\n",
            encoding="utf-8")
        folders = {ids["dataset"]: ("dataset", data)}
        models = save_tiny_models(Path(tmp) / "models", rows)
        folders[ids["classifier"]] = ("model", models[CLASSIFIER_NAME])
        folders[ids["causal_lm"]] = ("model", models[CAUSAL_LM_NAME])
        for repo_id, (repo_type, folder) in folders.items():
            api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
            api.upload_folder(repo_id=repo_id, repo_type=repo_type, folder_path=str(folder),
                              commit_message="Tiny random-initialised demo files")
    return ids


def upload_dataset_csv(api, repo_id: str, rows: list[dict], columns: list[str] | None = None,
                       *, private: bool = False) -> str:
    """A one-file CSV dataset, e.g. a deliberately malformed one."""
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    api.upload_file(path_or_fileobj=rows_to_csv(rows, columns), path_in_repo="train.csv",
                    repo_id=repo_id, repo_type="dataset", commit_message="Dataset")
    return repo_id


if __name__ == "__main__":  # python -m scheduler.recipes.tiny OWNER  (HF_ENDPOINT, HF_TOKEN from the env)
    import sys

    from huggingface_hub import HfApi

    print(json.dumps(seed_demo_repos(HfApi(), sys.argv[1] if len(sys.argv) > 1 else HfApi().whoami()["name"])))
