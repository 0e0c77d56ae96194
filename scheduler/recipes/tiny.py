"""A tiny model and dataset made on the spot, for demos and tests that cannot download anything.

Nothing here comes from the Hub: the dataset is generated from templates with a fixed seed, the
tokenizer is a word-level vocabulary built from that dataset, and the models are randomly
initialised from small configs (hidden size 32, 2 layers, a few hundred KB of weights), so a
fine-tuning run takes seconds on a CPU and still shows a falling loss.

`seed_demo_repos(api, owner)` uploads them to whatever Hub `api` points at (the emulator, usually).
`make_family_model(family, tokenizer)` makes a tiny random model of each common family (BERT,
DistilBERT, RoBERTa, DeBERTa-v2, GPT-2, Llama, Mistral, Phi-3, Qwen2, OPT), saved with the head its
Hub checkpoints carry (masked LM for encoders, causal LM for decoders) and a tokenizer shaped like
the family's own (special tokens, padding, what is added around a text).
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


# Per tokenizer style: the special tokens (first ones get the first ids, as in the real vocabularies),
# the template around one text, and the roles. None: the family's tokenizer has no such token.
TOKENIZER_STYLES: dict[str, dict] = {
    "encoder": {"specials": SPECIAL_TOKENS, "template": "[CLS] $A [SEP]",
                "roles": {"unk": "[UNK]", "pad": "[PAD]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]",
                          "bos": "[BOS]", "eos": "[EOS]"}},
    "roberta": {"specials": ("<s>", "<pad>", "</s>", "<unk>", "<mask>"), "template": "<s> $A </s>",
                "roles": {"unk": "<unk>", "pad": "<pad>", "cls": "<s>", "sep": "</s>", "mask": "<mask>",
                          "bos": "<s>", "eos": "</s>"}},
    # GPT-2: no pad token, BOS = EOS, nothing added around a text.
    "gpt2": {"specials": ("<|endoftext|>", "<unk>"), "template": None,
             "roles": {"unk": "<unk>", "bos": "<|endoftext|>", "eos": "<|endoftext|>"}},
    # Llama and Mistral: BOS prepended, no pad token.
    "llama": {"specials": ("<unk>", "<s>", "</s>", "<|eot_id|>"), "template": "<s> $A",
              "roles": {"unk": "<unk>", "bos": "<s>", "eos": "</s>"}},
    # Phi-3: BOS prepended, pad = EOS.
    "phi3": {"specials": ("<unk>", "<s>", "</s>", "<|endoftext|>"), "template": "<s> $A",
             "roles": {"unk": "<unk>", "bos": "<s>", "eos": "<|endoftext|>", "pad": "<|endoftext|>"}},
    # Qwen2: no BOS, its own pad and EOS, no UNK.
    "qwen2": {"specials": ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<unk>"), "template": None,
              "roles": {"eos": "<|im_end|>", "pad": "<|endoftext|>"}},
    # OPT: </s> prepended as BOS, <pad> is id 1.
    "opt": {"specials": ("<s>", "<pad>", "</s>", "<unk>"), "template": "</s> $A",
            "roles": {"unk": "<unk>", "pad": "<pad>", "bos": "</s>", "eos": "</s>"}},
}


def make_tokenizer(texts: list[str], style: str = "encoder", model_max_length: int | None = 64):
    """A word-level tokenizer over every word in `texts`, with the special tokens and template of
    `style` (a key of TOKENIZER_STYLES); `model_max_length=None` saves it without one."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    spec = TOKENIZER_STYLES[style]
    words = sorted({w for text in texts for w in text.lower().split()} - set(spec["specials"]))
    vocab = {token: i for i, token in enumerate(list(spec["specials"]) + words)}
    unk = spec["roles"].get("unk") or spec["specials"][0]
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=unk))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if spec["template"]:
        added = [t for t in spec["template"].split() if t != "$A"]
        backend.post_processor = processors.TemplateProcessing(
            single=spec["template"], special_tokens=[(t, vocab[t]) for t in dict.fromkeys(added)])
    kwargs = {f"{role}_token": token for role, token in spec["roles"].items()}
    if model_max_length is not None:
        kwargs["model_max_length"] = model_max_length
    return PreTrainedTokenizerFast(tokenizer_object=backend, **kwargs)


_ENCODER_SIZE = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
_DECODER_SIZE = {**_ENCODER_SIZE, "num_key_value_heads": 1}
# family: (tokenizer style, config class, checkpoint class, config kwargs).
FAMILIES: dict[str, tuple[str, str, str, dict]] = {
    "bert": ("encoder", "BertConfig", "BertForMaskedLM", _ENCODER_SIZE),
    "distilbert": ("encoder", "DistilBertConfig", "DistilBertForMaskedLM",
                   {"dim": 32, "n_layers": 2, "n_heads": 2, "hidden_dim": 64}),
    "roberta": ("roberta", "RobertaConfig", "RobertaForMaskedLM", _ENCODER_SIZE),
    "deberta-v2": ("encoder", "DebertaV2Config", "DebertaV2ForMaskedLM", _ENCODER_SIZE),
    "gpt2": ("gpt2", "GPT2Config", "GPT2LMHeadModel", {"n_embd": 32, "n_layer": 2, "n_head": 2}),
    "llama": ("llama", "LlamaConfig", "LlamaForCausalLM", _DECODER_SIZE),
    "mistral": ("llama", "MistralConfig", "MistralForCausalLM", _DECODER_SIZE),
    "phi3": ("phi3", "Phi3Config", "Phi3ForCausalLM", _DECODER_SIZE),
    "qwen2": ("qwen2", "Qwen2Config", "Qwen2ForCausalLM", _DECODER_SIZE),
    "opt": ("opt", "OPTConfig", "OPTForCausalLM",
            {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "ffn_dim": 64,
             "word_embed_proj_dim": 32}),
}
ENCODER_FAMILIES = ("bert", "distilbert", "roberta", "deberta-v2")
DECODER_FAMILIES = ("gpt2", "llama", "mistral", "phi3", "qwen2", "opt")


def make_family_model(family: str, tokenizer, *, positions: int = 64, seed: int = 0, **config_overrides):
    """A tiny random model of `family` (a key of FAMILIES) for `tokenizer`, as its Hub checkpoints
    come: special token ids from the tokenizer, `positions` usable positions (RoBERTa's offset
    added), `config_overrides` last (e.g. a Llama-3 `eos_token_id` list)."""
    import torch
    import transformers

    _style, config_name, model_name, size = FAMILIES[family]
    ids = {role: getattr(tokenizer, f"{role}_token_id") for role in ("pad", "bos", "eos")}
    kwargs = {**size, "vocab_size": len(tokenizer), "max_position_embeddings": positions,
              **{f"{role}_token_id": value for role, value in ids.items() if value is not None}}
    if family == "roberta":  # position ids start after the padding index
        kwargs["max_position_embeddings"] = positions + (ids["pad"] or 1) + 1
    if family == "gpt2":
        kwargs["n_positions"] = kwargs.pop("max_position_embeddings")
    kwargs.update(config_overrides)
    torch.manual_seed(seed)
    config = getattr(transformers, config_name)(**kwargs)
    return getattr(transformers, model_name)(config)


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
