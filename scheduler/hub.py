"""Shared Hub-client plumbing: an HTTP timeout, retries honouring Retry-After, error classification."""

from __future__ import annotations

import random
import threading
import time
from typing import Callable, TypeVar

import httpx2
from huggingface_hub import set_client_factory
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.utils._http import hf_request_event_hook

from .errors import StoreError
from .redact import redact

T = TypeVar("T")
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
NETWORK_ERRORS = (httpx2.TimeoutException, httpx2.NetworkError, httpx2.RemoteProtocolError)
DEFAULT_TIMEOUT_S = 30.0

_lock = threading.Lock()
_timeout_installed: float | None = None


def ensure_http_timeout(seconds: float = DEFAULT_TIMEOUT_S) -> None:
    """The client's shared httpx2.Client has no timeout by default: a stalled Hub would hang a worker forever."""
    global _timeout_installed
    with _lock:
        if _timeout_installed is not None:
            return
        _timeout_installed = seconds
        set_client_factory(
            lambda: httpx2.Client(
                event_hooks={"request": [hf_request_event_hook]},
                follow_redirects=True,
                timeout=httpx2.Timeout(seconds, connect=min(seconds, 10.0)),
            )
        )


def status_of(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def retry_after_s(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    if response is None:
        return None
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, HfHubHTTPError):
        return status_of(exc) in RETRY_STATUSES
    return isinstance(exc, NETWORK_ERRORS)


def backoff_delay(attempt: int, base: float = 0.25, cap: float = 8.0) -> float:
    """Full jitter: spreads out workers that failed together so they do not retry together."""
    return random.uniform(0, min(cap, base * (2**attempt)))


def with_retries(fn: Callable[[], T], what: str, *, deadline_s: float = 120.0, sleep=time.sleep) -> T:
    """Run a request that is safe to repeat; retry 408/429/5xx and network errors until the deadline."""
    start = time.monotonic()
    attempt = 0
    while True:
        try:
            return fn()
        except Exception as exc:
            if not is_transient(exc):
                raise
            elapsed = time.monotonic() - start
            delay = retry_after_s(exc)
            delay = backoff_delay(attempt) if delay is None else delay + random.uniform(0, 0.1)
            if elapsed + delay > deadline_s:
                raise StoreError(f"{what} failed after {attempt + 1} tries over {elapsed:.0f}s: {describe(exc)}") from exc
            attempt += 1
            sleep(delay)


def describe(exc: BaseException) -> str:
    """One line for a person: the HTTP status and the server's message, tokens removed."""
    status = status_of(exc)
    lines = str(exc).splitlines()
    message = getattr(exc, "server_message", None) or (lines[0] if lines else type(exc).__name__)
    text = f"HTTP {status}: {message}" if status else f"{type(exc).__name__}: {message}"
    return redact(text)
