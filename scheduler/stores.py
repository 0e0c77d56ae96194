"""Stores move bytes and versions, nothing more: read a file with the store's version, write files
only if the version is still the one read (compare-and-swap). They know nothing of tasks."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, ContextManager, Mapping, Protocol

from filelock import FileLock, Timeout

from .errors import AmbiguousWrite, CommitQuotaExceeded, Conflict, StoreError, Unavailable, UserError

LOCK_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Snapshot:
    data: bytes | None  # None: the file does not exist (yet)
    version: str | None  # None: nothing stored at all


class Store(Protocol):
    path: str  # the main file (tasks.csv); its version is the store's version

    def read(self) -> Snapshot: ...

    def read_at(self, path: str, version: str | None) -> bytes | None:
        """Another file as of `version` (a version returned by read())."""

    def head(self) -> str | None:
        """The current version alone: what a watcher polls to notice a change cheaply."""

    def write(self, files: Mapping[str, bytes], *, expected: str | None, message: str) -> str:
        """Write all files at once if the store is still at `expected`; return the new version.
        Raises Conflict when it moved, AmbiguousWrite when the outcome is unknown."""

    def now(self) -> datetime:
        """The store's clock (UTC): the Hub's for a HubStore, this machine's otherwise."""

    def lock(self) -> ContextManager: ...

    def describe(self) -> str: ...


def _digest(data: bytes | None) -> str | None:
    return None if data is None else hashlib.blake2b(data, digest_size=16).hexdigest()


class MemoryStore:
    """In-process store for tests and dry runs; the version is a counter."""

    def __init__(self, path: str = "tasks.csv", files: Mapping[str, bytes] | None = None):
        self.path = path
        self.files: dict[str, bytes] = dict(files or {})
        self.version = 1 if files else 0
        self._lock = threading.RLock()
        self.writes = 0

    def read(self) -> Snapshot:
        with self._lock:
            return Snapshot(self.files.get(self.path), str(self.version) if self.version else None)

    def read_at(self, path: str, version: str | None) -> bytes | None:
        with self._lock:
            if version != (str(self.version) if self.version else None):
                raise Conflict(f"version {version} is gone")
            return self.files.get(path)

    def head(self) -> str | None:
        with self._lock:
            return str(self.version) if self.version else None

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def write(self, files: Mapping[str, bytes], *, expected: str | None, message: str) -> str:
        with self._lock:
            if expected != (str(self.version) if self.version else None):
                raise Conflict(f"store moved from {expected} to {self.version}")
            self.files.update(files)
            self.version += 1
            self.writes += 1
            return str(self.version)

    def lock(self) -> ContextManager:
        return self._lock

    def describe(self) -> str:
        return f"memory:{self.path}"


class FileStore:
    """A folder on disk. A filelock serialises processes; files are replaced atomically (temp + fsync + rename)."""

    def __init__(self, folder: str | os.PathLike, path: str = "tasks.csv"):
        self.folder = Path(folder)
        self.path = path
        self.folder.mkdir(parents=True, exist_ok=True)
        self._filelock = FileLock(str(self.folder / f".{Path(path).name}.lock"), timeout=LOCK_TIMEOUT_S)

    def _file(self, path: str) -> Path:
        target = (self.folder / path).resolve()
        if self.folder.resolve() not in target.parents:
            raise UserError(f"path {path!r} leaves the queue folder")
        return target

    def read(self) -> Snapshot:
        data = self._read(self.path)
        return Snapshot(data, _digest(data))

    def read_at(self, path: str, version: str | None) -> bytes | None:
        return self._read(path)

    def head(self) -> str | None:
        return _digest(self._read(self.path))

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def _read(self, path: str) -> bytes | None:
        try:
            return self._file(path).read_bytes()
        except FileNotFoundError:
            return None

    def write(self, files: Mapping[str, bytes], *, expected: str | None, message: str) -> str:
        with self.lock():
            current = _digest(self._read(self.path))
            if current != expected:
                raise Conflict(f"{self.path} changed since it was read")
            # The main file goes last: a crash in between leaves extra copies elsewhere, never a lost row.
            ordered = sorted(files, key=lambda p: p == self.path)
            for path in ordered:
                _atomic_write(self._file(path), files[path])
            return _digest(files[self.path]) if self.path in files else current

    @contextlib.contextmanager
    def lock(self):
        try:
            with self._filelock:
                yield
        except Timeout:
            raise StoreError(f"timed out after {LOCK_TIMEOUT_S:.0f}s waiting for {self._filelock.lock_file}") from None

    def describe(self) -> str:
        return str(self.folder / self.path)


def _atomic_write(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class HubStore:
    """A file in a Hub repo. Version = head commit sha; writes are commits with `parent_commit`.

    Reads never go through `hf_hub_download(revision="main")`, which silently serves a stale cached copy
    when the HEAD fails: HEAD gives the head sha, then the file is fetched at exactly that sha.
    """

    def __init__(
        self,
        repo_id: str,
        path: str = "tasks.csv",
        *,
        repo_type: str = "dataset",
        token: str | None = None,
        endpoint: str | None = None,
        timeout: float = 30.0,
        local_lock: bool = True,
        lock_dir: str | os.PathLike | None = None,
        retry_deadline_s: float = 120.0,
        local_clock: Callable[[], float] | None = None,
    ):
        from huggingface_hub import HfApi

        from . import hub, validation

        hub.ensure_http_timeout(timeout)
        self.repo_id = validation.repo_id(repo_id, "queue")
        self.path = path
        self.repo_type = repo_type
        self.token = token
        self.api = HfApi(endpoint=endpoint, token=token)
        self.timeout = timeout
        self.retry_deadline_s = retry_deadline_s
        self._cache: tuple[str, str, bytes | None] | None = None  # (version, path, data) of the last read
        self._missing_at: set[str] = set()  # head shas at which the main file did not exist
        self.clock = hub.HubClock(local_clock or time.time)
        self._thread_lock = threading.RLock()
        self._filelock: FileLock | None = None
        if local_lock:
            folder = Path(lock_dir or os.environ.get("SCHEDULER_LOCK_DIR") or Path.home() / ".cache" / "space-scheduler" / "locks")
            folder.mkdir(parents=True, exist_ok=True)
            key = hashlib.sha1(f"{self.api.endpoint}|{repo_type}|{self.repo_id}|{path}".encode()).hexdigest()[:16]
            name = re.sub(r"[^A-Za-z0-9_.-]", "-", f"{self.repo_id}-{path}")[:80]
            self._filelock = FileLock(str(folder / f"{name}-{key}.lock"), timeout=LOCK_TIMEOUT_S)

    def describe(self) -> str:
        prefix = {"dataset": "datasets/", "space": "spaces/", "model": ""}[self.repo_type]
        return f"hf://{prefix}{self.repo_id}/{self.path}"

    def ensure_repo(self, private: bool = True) -> None:
        """Create the repo if it does not exist; private by default (a queue holds people's work)."""
        self._retrying(
            lambda: self.api.create_repo(self.repo_id, repo_type=self.repo_type, private=private, exist_ok=True),
            f"creating {self.repo_id}",
        )

    def _url(self, path: str, revision: str) -> str:
        from huggingface_hub import hf_hub_url

        return hf_hub_url(self.repo_id, path, repo_type=self.repo_type, revision=revision, endpoint=self.api.endpoint)

    def _retrying(self, fn, what: str):
        from . import hub

        return hub.with_retries(fn, what, deadline_s=self.retry_deadline_s)

    def _once(self, fn, what: str):
        """One request; a transient failure becomes Unavailable so the caller can wait without holding locks."""
        from . import hub

        try:
            return fn()
        except Exception as exc:
            if hub.is_transient(exc):
                raise Unavailable(f"{what}: {hub.describe(exc)}", hub.retry_after_s(exc)) from None
            raise

    def _head(self) -> str | None:
        """One HEAD of the file on main: the head commit sha (`X-Repo-Commit`), None when the file does
        not exist yet. Made here rather than through `get_hf_file_metadata` to read the answer's `Date`
        (the Hub's clock) too; redirects are not followed (the first answer carries the sha)."""
        from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError
        from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

        def fetch() -> str | None:
            sent = self.clock.local()
            response = get_session().head(
                self._url(self.path, "main"), headers={**build_hf_headers(token=self.token), "Accept-Encoding": "identity"},
                timeout=self.timeout, follow_redirects=False,
            )
            self.clock.observe(response.headers.get("Date"), sent, self.clock.local())
            if 300 <= response.status_code < 400:
                return response.headers.get("X-Repo-Commit")
            try:
                hf_raise_for_status(response)
            except EntryNotFoundError:
                sha = response.headers.get("X-Repo-Commit") or self._repo_sha()
                if sha:
                    self._missing_at.add(sha)
                return sha
            sha = response.headers.get("X-Repo-Commit")
            if not sha:
                raise StoreError(f"{self.describe()}: the Hub's answer has no X-Repo-Commit header")
            return sha

        try:
            return self._once(fetch, f"reading {self.describe()}")
        except RepositoryNotFoundError:
            raise StoreError(
                f"{self.repo_type} {self.repo_id} not found (or not visible with this token); "
                f"create it with `space-scheduler init --queue hf://{self.repo_type}s/{self.repo_id}`"
            ) from None

    def _repo_sha(self) -> str | None:
        return self.api.repo_info(self.repo_id, repo_type=self.repo_type, expand=["sha"]).sha

    def head(self) -> str | None:
        """The head commit sha, from one HEAD request (the resolvers quota, not the API quota)."""
        return self._head()

    def now(self) -> datetime:
        """The Hub's clock, from the `Date` of its latest answers (hub.HubClock)."""
        return self.clock.now()

    def read(self) -> Snapshot:
        version = self._head()
        exists = self._exists_at(version)
        return Snapshot(self._get(self.path, version) if exists else None, version)

    def _exists_at(self, version: str | None) -> bool:
        # _head answered for a missing file with the repo's sha: remember which shas lack the file.
        return version is not None and version not in self._missing_at

    def read_at(self, path: str, version: str | None) -> bytes | None:
        if version is None:
            return None
        return self._get(path, version)

    def _get(self, path: str, version: str) -> bytes | None:
        from huggingface_hub.errors import EntryNotFoundError
        from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

        cached = self._cache
        if cached is not None and cached[0] == version and cached[1] == path:
            return cached[2]

        def fetch() -> bytes | None:
            response = get_session().get(
                self._url(path, version), headers=build_hf_headers(token=self.token), timeout=self.timeout
            )
            try:
                hf_raise_for_status(response)
            except EntryNotFoundError:
                return None
            return response.content

        data = self._once(fetch, f"downloading {path} at {version[:8]}")
        if path == self.path:
            self._cache = (version, path, data)
        return data

    def write(self, files: Mapping[str, bytes], *, expected: str | None, message: str) -> str:
        from huggingface_hub import CommitOperationAdd
        from huggingface_hub.errors import HfHubHTTPError

        from . import hub

        operations = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=data) for p, data in files.items()]
        try:
            info = self.api.create_commit(
                self.repo_id,
                operations,
                commit_message=message,
                repo_type=self.repo_type,
                parent_commit=expected,
            )
        except HfHubHTTPError as exc:
            status = hub.status_of(exc)
            if status == 412:
                raise Conflict(f"{self.describe()} moved since {str(expected)[:8]}") from None
            if status == 429:
                # A rate-limited commit was refused, not applied: safe to resend after the wait.
                kind = CommitQuotaExceeded if hub.is_commit_quota(exc) else Unavailable
                raise kind(f"commit to {self.describe()}: {hub.describe(exc)}", hub.retry_after_s(exc)) from None
            if status in hub.RETRY_STATUSES:
                raise AmbiguousWrite(f"commit to {self.describe()}: {hub.describe(exc)}") from None
            raise StoreError(f"commit to {self.describe()} refused: {hub.describe(exc)}") from None
        except hub.NETWORK_ERRORS as exc:
            raise AmbiguousWrite(f"commit to {self.describe()}: {hub.describe(exc)}") from None
        version = info.oid
        if self.path in files:
            self._cache = (version, self.path, files[self.path])
        return version

    @contextlib.contextmanager
    def lock(self):
        with self._thread_lock:
            if self._filelock is None:
                yield
                return
            try:
                with self._filelock:
                    yield
            except Timeout:
                raise StoreError(f"timed out waiting for the local lock {self._filelock.lock_file}") from None


def open_store(url: str, *, token: str | None = None, endpoint: str | None = None, **options) -> Store:
    """`hf://datasets/OWNER/NAME[/path/tasks.csv]`, `memory://`, or a folder path."""
    if url.startswith("hf://"):
        rest = url[len("hf://"):].strip("/")
        repo_type = "model"
        for prefix, kind in (("datasets/", "dataset"), ("spaces/", "space")):
            if rest.startswith(prefix):
                rest, repo_type = rest[len(prefix):], kind
        parts = rest.split("/")
        if len(parts) < 2 or not all(parts[:2]):
            raise UserError(f"queue {url!r}: expected hf://datasets/OWNER/NAME[/path/tasks.csv]")
        path = "/".join(parts[2:]) or "tasks.csv"
        if ".." in path.split("/"):
            raise UserError(f"queue {url!r}: the path inside the repo may not contain '..'")
        return HubStore("/".join(parts[:2]), path, repo_type=repo_type, token=token, endpoint=endpoint, **options)
    if url.startswith("memory://"):
        return MemoryStore(url[len("memory://"):] or "tasks.csv")
    if "://" in url:
        raise UserError(f"queue {url!r}: use hf://datasets/OWNER/NAME or a folder path")
    return FileStore(url)
