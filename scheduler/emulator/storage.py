"""Crash-safe repo store: content-addressed blobs and a linear commit history per branch.

Layout under the data dir::

    blobs/<sha[:2]>/<sha>                      file contents, keyed by git blob sha1
    repos/<type>s/<ns>/<name>/repo.json        metadata (owner, private, createdAt, sdk, ...)
    repos/<type>s/<ns>/<name>/refs.json        {"branch": commit sha}
    repos/<type>s/<ns>/<name>/commits/<sha>.json  one commit: parent, full tree, message, author, date

Every file is written to a temp file, fsynced and renamed into place. Blobs and the commit
object land before refs.json moves, so a SIGKILL at any point leaves either the old or the
new head, never a ref to something missing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

REPO_TYPES = ("model", "dataset", "space")
GITATTRIBUTES = (
    "*.7z filter=lfs diff=lfs merge=lfs -text\n"
    "*.bin filter=lfs diff=lfs merge=lfs -text\n"
    "*.parquet filter=lfs diff=lfs merge=lfs -text\n"
    "*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
    "*.zip filter=lfs diff=lfs merge=lfs -text\n"
).encode()


class StoreError(Exception):
    """Base for store failures that map to an HTTP status."""

    status = 400
    code: str | None = None


class RepoNotFound(StoreError):
    status, code = 404, "RepoNotFound"


class RevisionNotFound(StoreError):
    status, code = 404, "RevisionNotFound"


class EntryNotFound(StoreError):
    status, code = 404, "EntryNotFound"


class RepoExists(StoreError):
    status = 409


class ParentMismatch(StoreError):
    status = 412


def git_blob_sha1(data: bytes) -> str:
    """The id git (and the Hub ETag of a regular file) gives to this content."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def atomic_write(path: Path, data: bytes, fsync: bool = True) -> None:
    """Write via temp file + fsync + rename so readers never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix="." + path.name[-20:])
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if fsync:
        _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_json(path: Path, obj: Any, fsync: bool = True) -> None:
    atomic_write(path, json.dumps(obj, indent=1, sort_keys=True).encode(), fsync=fsync)


def read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        return default


@dataclass
class Commit:
    id: str
    parent: str | None
    tree: dict[str, dict]  # path -> {"oid": blob sha1, "size": int}
    title: str
    message: str
    author: str
    date: float

    def to_json(self) -> dict:
        return self.__dict__.copy()


@dataclass
class Operation:
    """One change in a commit: kind is 'add', 'delete' or 'delete_folder'."""

    kind: str
    path: str
    content: bytes = b""


@dataclass
class Repo:
    type: str
    ns: str
    name: str
    meta: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.ns}/{self.name}"

    @property
    def key(self) -> str:
        return f"{self.type}s/{self.ns}/{self.name}"


class RepoStore:
    """All repos of one data dir. Writes to one repo are serialised by a per-repo lock.

    `clock` gives the time commits and repos are stamped with (the emulator clock).
    """

    def __init__(self, root: Path, fsync: bool = True, clock: Callable[[], float] = time.time):
        self.root = Path(root)
        self.fsync = fsync
        self.clock = clock
        (self.root / "blobs").mkdir(parents=True, exist_ok=True)
        (self.root / "repos").mkdir(parents=True, exist_ok=True)
        self._locks: dict[str, threading.RLock] = {}
        self._locks_guard = threading.Lock()
        self._commit_cache: dict[str, Commit] = {}
        self._clean_temp_files()

    def _clean_temp_files(self) -> None:
        # Leftovers of writes interrupted by a crash; they were never renamed into place.
        for tmp in self.root.rglob(".tmp-*"):
            try:
                tmp.unlink()
            except OSError:
                pass

    # -- locking ---------------------------------------------------------------------------
    def lock(self, repo_type: str, repo_id: str) -> threading.RLock:
        key = f"{repo_type}/{repo_id}"
        with self._locks_guard:
            return self._locks.setdefault(key, threading.RLock())

    # -- paths -----------------------------------------------------------------------------
    def _repo_dir(self, repo_type: str, repo_id: str) -> Path:
        ns, name = split_id(repo_id)
        return self.root / "repos" / f"{repo_type}s" / ns / name

    def _blob_path(self, oid: str) -> Path:
        return self.root / "blobs" / oid[:2] / oid

    # -- repos -----------------------------------------------------------------------------
    def exists(self, repo_type: str, repo_id: str) -> bool:
        return (self._repo_dir(repo_type, repo_id) / "repo.json").exists()

    def get(self, repo_type: str, repo_id: str) -> Repo:
        meta = read_json(self._repo_dir(repo_type, repo_id) / "repo.json")
        if meta is None:
            raise RepoNotFound(f"Repository Not Found for url: {repo_type}s/{repo_id}")
        ns, name = split_id(repo_id)
        return Repo(repo_type, ns, name, meta)

    def list(self, repo_type: str) -> list[Repo]:
        base = self.root / "repos" / f"{repo_type}s"
        out = []
        for meta_path in sorted(base.glob("*/*/repo.json")):
            ns, name = meta_path.parent.parent.name, meta_path.parent.name
            out.append(Repo(repo_type, ns, name, read_json(meta_path, {})))
        return out

    def create(self, repo_type: str, repo_id: str, owner: str, private: bool, extra: dict | None = None,
               files: dict[str, bytes] | None = None, message: str = "initial commit") -> Repo:
        with self.lock(repo_type, repo_id):
            if self.exists(repo_type, repo_id):
                raise RepoExists(f"You already created this {repo_type} repo")
            now = self.clock()
            meta = {"owner": owner, "private": bool(private), "createdAt": iso(now), **(extra or {})}
            d = self._repo_dir(repo_type, repo_id)
            d.mkdir(parents=True, exist_ok=True)
            atomic_write_json(d / "repo.json", meta, self.fsync)
            initial = files if files is not None else {".gitattributes": GITATTRIBUTES}
            ops = [Operation("add", p, c) for p, c in initial.items()]
            self.commit(repo_type, repo_id, ops, title=message, author=owner)
            return self.get(repo_type, repo_id)

    def update_meta(self, repo_type: str, repo_id: str, **changes: Any) -> Repo:
        with self.lock(repo_type, repo_id):
            repo = self.get(repo_type, repo_id)
            repo.meta.update(changes)
            atomic_write_json(self._repo_dir(repo_type, repo_id) / "repo.json", repo.meta, self.fsync)
            return repo

    def delete(self, repo_type: str, repo_id: str) -> None:
        with self.lock(repo_type, repo_id):
            d = self._repo_dir(repo_type, repo_id)
            if not (d / "repo.json").exists():
                raise RepoNotFound(f"{repo_type}s/{repo_id}")
            # Rename first so a crash mid-rmtree never leaves a half-deleted but visible repo.
            trash = d.with_name(f".deleted-{d.name}-{time.time_ns()}")
            os.replace(d, trash)
            shutil.rmtree(trash, ignore_errors=True)
            self._commit_cache = {k: v for k, v in self._commit_cache.items() if not k.startswith(str(d))}

    def move(self, repo_type: str, from_id: str, to_id: str) -> None:
        with self.lock(repo_type, from_id), self.lock(repo_type, to_id):
            src, dst = self._repo_dir(repo_type, from_id), self._repo_dir(repo_type, to_id)
            if not (src / "repo.json").exists():
                raise RepoNotFound(f"{repo_type}s/{from_id}")
            if dst.exists():
                raise RepoExists(f"{repo_type}s/{to_id} already exists")
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
            self._commit_cache.clear()

    # -- refs and commits --------------------------------------------------------------------
    def refs(self, repo_type: str, repo_id: str) -> dict[str, str]:
        self.get(repo_type, repo_id)
        return read_json(self._repo_dir(repo_type, repo_id) / "refs.json", {})

    def _write_refs(self, repo_type: str, repo_id: str, refs: dict[str, str]) -> None:
        atomic_write_json(self._repo_dir(repo_type, repo_id) / "refs.json", refs, self.fsync)

    def load_commit(self, repo_type: str, repo_id: str, sha: str) -> Commit:
        path = self._repo_dir(repo_type, repo_id) / "commits" / f"{sha}.json"
        key = str(path)
        cached = self._commit_cache.get(key)
        if cached is not None:
            return cached
        data = read_json(path)
        if data is None:
            raise RevisionNotFound(f"Invalid rev id: {sha}")
        commit = Commit(**data)
        if len(self._commit_cache) > 4096:
            self._commit_cache.clear()
        self._commit_cache[key] = commit
        return commit

    def resolve(self, repo_type: str, repo_id: str, rev: str) -> Commit:
        """Branch name, full sha or unique short sha -> commit."""
        refs = self.refs(repo_type, repo_id)
        if rev in refs:
            return self.load_commit(repo_type, repo_id, refs[rev])
        if rev.startswith("refs/heads/") and rev[11:] in refs:
            return self.load_commit(repo_type, repo_id, refs[rev[11:]])
        rev_l = rev.lower()
        if 5 <= len(rev_l) <= 40 and all(c in "0123456789abcdef" for c in rev_l):
            if len(rev_l) == 40:
                return self.load_commit(repo_type, repo_id, rev_l)
            cdir = self._repo_dir(repo_type, repo_id) / "commits"
            matches = [p.stem for p in cdir.glob(f"{rev_l}*.json")]
            if len(matches) == 1:
                return self.load_commit(repo_type, repo_id, matches[0])
        raise RevisionNotFound(f"Invalid rev id: {rev}")

    def history(self, repo_type: str, repo_id: str, rev: str) -> Iterable[Commit]:
        commit: Commit | None = self.resolve(repo_type, repo_id, rev)
        while commit is not None:
            yield commit
            commit = self.load_commit(repo_type, repo_id, commit.parent) if commit.parent else None

    def read_blob(self, oid: str) -> bytes:
        return self._blob_path(oid).read_bytes()

    def blob_path(self, oid: str) -> Path:
        return self._blob_path(oid)

    def _put_blob(self, data: bytes) -> str:
        oid = git_blob_sha1(data)
        path = self._blob_path(oid)
        if not path.exists():
            atomic_write(path, data, self.fsync)
        return oid

    def _write_commit(self, repo_type: str, repo_id: str, parent: str | None, tree: dict, title: str,
                      message: str, author: str) -> Commit:
        date = self.clock()
        body = json.dumps([repo_type, repo_id, parent, tree, title, message, author, date, time.time_ns()],
                          sort_keys=True).encode()
        sha = hashlib.sha1(body).hexdigest()
        commit = Commit(sha, parent, tree, title, message, author, date)
        atomic_write_json(self._repo_dir(repo_type, repo_id) / "commits" / f"{sha}.json", commit.to_json(),
                          self.fsync)
        return commit

    def commit(self, repo_type: str, repo_id: str, ops: list[Operation], *, title: str, message: str = "",
               author: str = "demo", branch: str = "main", parent_commit: str | None = None) -> Commit:
        """Apply `ops` on top of `branch` atomically; raise ParentMismatch if `parent_commit` is not the head."""
        with self.lock(repo_type, repo_id):
            refs = self.refs(repo_type, repo_id)
            head = refs.get(branch)
            if head is None and refs:
                raise RevisionNotFound(f"Invalid rev id: {branch}")
            if parent_commit is not None:
                if head is None or not head.startswith(parent_commit.lower()):
                    raise ParentMismatch("A commit has happened since. Please refresh and try again.")
            tree = dict(self.load_commit(repo_type, repo_id, head).tree) if head else {}
            for op in ops:
                path = op.path.strip("/")
                if op.kind == "add":
                    tree[path] = {"oid": self._put_blob(op.content), "size": len(op.content)}
                elif op.kind == "delete":
                    if path not in tree:
                        raise EntryNotFound(f"{path} does not exist in {repo_id}")
                    del tree[path]
                elif op.kind == "delete_folder":
                    prefix = path + "/" if path else ""
                    gone = [p for p in tree if p.startswith(prefix)]
                    if not gone:
                        raise EntryNotFound(f"{path} does not exist in {repo_id}")
                    for p in gone:
                        del tree[p]
                else:
                    raise StoreError(f"unknown operation {op.kind!r}")
            commit = self._write_commit(repo_type, repo_id, head, tree, title, message, author)
            refs[branch] = commit.id
            self._write_refs(repo_type, repo_id, refs)
            return commit

    def squash(self, repo_type: str, repo_id: str, branch: str, message: str, author: str) -> Commit:
        with self.lock(repo_type, repo_id):
            head = self.resolve(repo_type, repo_id, branch)
            commit = self._write_commit(repo_type, repo_id, None, head.tree, message, "", author)
            refs = self.refs(repo_type, repo_id)
            refs[branch] = commit.id
            self._write_refs(repo_type, repo_id, refs)
            return commit

    def set_branch(self, repo_type: str, repo_id: str, branch: str, sha: str | None) -> None:
        with self.lock(repo_type, repo_id):
            refs = self.refs(repo_type, repo_id)
            if sha is None:
                if branch not in refs:
                    raise RevisionNotFound(f"Invalid rev id: {branch}")
                del refs[branch]
            else:
                refs[branch] = sha
            self._write_refs(repo_type, repo_id, refs)


def split_id(repo_id: str) -> tuple[str, str]:
    ns, sep, name = repo_id.partition("/")
    if not sep or not ns or not name or "/" in name or name in (".", "..") or ns in (".", ".."):
        raise RepoNotFound(f"Invalid repo id {repo_id!r}")
    return ns, name
