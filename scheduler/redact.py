"""Keep Hub tokens out of anything printed, logged or stored."""

from __future__ import annotations

import os
import re

_TOKEN_RE = re.compile(r"\b(hf_[A-Za-z0-9]{8,}|api_[A-Za-z0-9]{16,})\b")
_extra: set[str] = set()


def register_secret(value: str | None) -> None:
    """Also redact this exact value (a token that does not look like `hf_...`)."""
    if value and len(value) >= 6:
        _extra.add(value)


def redact(text: str) -> str:
    if not text:
        return text
    secrets = set(_extra)
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        value = os.environ.get(name)
        if value and len(value) >= 6:
            secrets.add(value)
    for value in sorted(secrets, key=len, reverse=True):
        text = text.replace(value, "***")
    return _TOKEN_RE.sub("***", text)
