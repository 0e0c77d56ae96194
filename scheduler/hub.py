"""Shared Hub-client plumbing: an HTTP timeout, retries honouring Retry-After and RateLimit, error
classification, and the Hub's clock as read from the `Date` of its answers."""

from __future__ import annotations

import random
import re
import statistics
import threading
import time
from collections import deque
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
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


_RATELIMIT_T = re.compile(r";\s*t=(\d+(?:\.\d+)?)")
_RATELIMIT_R = re.compile(r";\s*r=(\d+)")
_ABOUT = re.compile(r"in about (an?|\d+(?:\.\d+)?)\s*(second|minute|hour)s?", re.IGNORECASE)
_UNIT_S = {"second": 1.0, "minute": 60.0, "hour": 3600.0}


def retry_after_s(exc: BaseException) -> float | None:
    """How long the Hub asked us to wait, in seconds, or None when it did not say.

    Read in this order: `Retry-After` (seconds or an HTTP date), the IETF `RateLimit` header's `t=` when
    its `r=` is 0 (the Hub's request quotas, hub-facts §8 and §11), then the text of a commit-quota refusal ("You can
    retry this action in about 1 hour"), which is all the Hub is documented to give for that quota."""
    response = getattr(exc, "response", None)
    if response is None:
        return None
    headers = response.headers
    value = headers.get("Retry-After")
    if value is not None:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                return max(0.0, (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds())
            except (TypeError, ValueError):
                pass
    ratelimit = headers.get("RateLimit") or ""
    remaining, reset = _RATELIMIT_R.search(ratelimit), _RATELIMIT_T.search(ratelimit)
    # Every answer carries RateLimit; its reset time is a wait only once the quota is spent (r=0), as
    # huggingface_hub reads it too.
    if reset and remaining and int(remaining.group(1)) == 0:
        return float(reset.group(1))
    text = getattr(exc, "server_message", None) or ""
    match = _ABOUT.search(text)
    if match:
        amount = 1.0 if match.group(1).lower() in ("a", "an") else float(match.group(1))
        return amount * _UNIT_S[match.group(2).lower()]
    return None


def is_commit_quota(exc: BaseException) -> bool:
    """A 429 for the per-repository commit quota (128 commits per hour, hub-facts §11), as opposed to
    the per-account request quotas that reset within 5 minutes."""
    if status_of(exc) != 429:
        return False
    text = (getattr(exc, "server_message", None) or str(exc)).lower()
    return "repository commits" in text or "commits (" in text


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


class HubClock:
    """The Hub's time, estimated from the `Date` header of its answers.

    Leases are written and judged in the Hub's time so that a machine whose clock is minutes off
    neither steals live leases nor keeps dead ones. `Date` has a resolution of one second, so each
    sample is taken at the middle of its request plus half a second, and the median of the last few
    samples is used. Until a sample arrives, the local clock is used as is."""

    def __init__(self, local: Callable[[], float] = time.time, samples: int = 7):
        self.local = local
        self._offsets: deque[float] = deque(maxlen=samples)
        self._lock = threading.Lock()

    def observe(self, date_header: str | None, sent_at: float, received_at: float) -> None:
        """`sent_at`/`received_at`: `local()` readings around the request."""
        if not date_header:
            return
        try:
            hub_time = parsedate_to_datetime(date_header).timestamp() + 0.5
        except (TypeError, ValueError):
            return
        with self._lock:
            self._offsets.append(hub_time - (sent_at + received_at) / 2)

    @property
    def offset_s(self) -> float:
        """Hub time minus local time, in seconds (0 before the first answer)."""
        with self._lock:
            return statistics.median(self._offsets) if self._offsets else 0.0

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.local(), timezone.utc) + timedelta(seconds=self.offset_s)


def describe(exc: BaseException) -> str:
    """One line for a person: the HTTP status and the server's message, tokens removed."""
    status = status_of(exc)
    lines = str(exc).splitlines()
    message = getattr(exc, "server_message", None) or (lines[0] if lines else type(exc).__name__)
    text = f"HTTP {status}: {message}" if status else f"{type(exc).__name__}: {message}"
    return redact(text)
