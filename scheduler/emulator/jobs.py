"""Hub Jobs, run locally: `command + arguments` as a subprocess (the docker image is ignored).

Stages follow the Hub: SCHEDULING -> RUNNING -> COMPLETED | ERROR | CANCELED. `environment` and
`secrets` become environment variables; secret values are kept in memory only (the stored and
returned job shows their keys). `timeoutSeconds` is enforced. A job that was running when the
emulator stopped is marked ERROR on the next start. The process finds the fake `nvidia-smi` of its
flavor first on its PATH (rule `gpu_machine`). Its billing period runs from RUNNING to its
terminal stage (billing.py); times are the emulator clock's.
"""

from __future__ import annotations

import json
import os
import secrets as _secrets
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from . import billing
from .accounts import _entity_id
from .machine import path_with_machine
from .storage import atomic_write_json, iso, read_json
from .supervisor import _STRIPPED_ENV, _terminate

if TYPE_CHECKING:
    from .hub import EmulatedHub

TERMINAL = {"COMPLETED", "ERROR", "CANCELED", "DELETED"}


class JobNotFound(Exception):
    pass


class JobRunner:
    def __init__(self, hub: "EmulatedHub"):
        self.hub = hub
        self.root = hub.data_dir / "jobs"
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._procs: dict[str, subprocess.Popen] = {}
        self._cancelled: set[str] = set()
        self._mark_interrupted()

    def _path(self, job_id: str) -> Path:
        return self.root / f"{job_id}.json"

    def log_path(self, job_id: str) -> Path:
        return self.root / f"{job_id}.log"

    def _mark_interrupted(self) -> None:
        for path in self.root.glob("*.json"):
            job = read_json(path)
            if job and job["status"]["stage"] not in TERMINAL:
                job["status"] = {"stage": "ERROR", "message": "The emulator stopped while the job was running"}
                job["finishedAt"] = iso(self.hub.clock.now())
                job["_finished"] = job.get("_finished") or self.hub.clock.now()
                atomic_write_json(path, job, self.hub.store.fsync)

    def _save(self, job: dict) -> None:
        atomic_write_json(self._path(job["id"]), job, self.hub.store.fsync)

    def get(self, namespace: str, job_id: str) -> dict:
        job = read_json(self._path(job_id)) if all(c.isalnum() for c in job_id) else None
        if job is None or job["owner"]["name"] != namespace:
            raise JobNotFound(job_id)
        return job

    def public(self, job: dict) -> dict:
        """JobInfo JSON as the Hub returns it, with computed durations."""
        out = dict(job)
        now = self.hub.clock.now()
        created = job["_created"]
        started = job.get("_started")
        finished = job.get("_finished")
        out["durations"] = {
            "schedulingSecs": int((started or now) - created),
            "runningSecs": int((finished or now) - started) if started else None,
            "totalSecs": int((finished or now) - created),
        }
        return {k: v for k, v in out.items() if not k.startswith("_")}

    def list(self, namespace: str, stages: list[str], labels: list[str]) -> list[dict]:
        jobs = []
        for path in sorted(self.root.glob("*.json")):
            job = read_json(path)
            if not job or job["owner"]["name"] != namespace:
                continue
            if stages and job["status"]["stage"] not in stages:
                continue
            if labels and not all(_label_match(job.get("labels") or {}, lab) for lab in labels):
                continue
            jobs.append(self.public(job))
        jobs.sort(key=lambda j: j["createdAt"], reverse=True)
        return jobs

    def create(self, namespace: str, spec: dict, initiator: str) -> dict:
        command = list(spec.get("command") or []) + list(spec.get("arguments") or [])
        if not command:
            raise ValueError("command is required")
        now = self.hub.clock.now()
        job_id = _secrets.token_hex(12)
        secret_values = {str(k): str(v) for k, v in (spec.get("secrets") or {}).items()}
        job = {
            "id": job_id,
            "createdAt": iso(now),
            "dockerImage": spec.get("dockerImage"),
            "spaceId": spec.get("spaceId"),
            "command": spec.get("command"),
            "arguments": spec.get("arguments") or [],
            "environment": spec.get("environment") or {},
            "secrets": {k: None for k in secret_values},
            "flavor": spec.get("flavor") or "cpu-basic",
            "labels": spec.get("labels"),
            "timeoutSeconds": spec.get("timeoutSeconds"),
            "status": {"stage": "SCHEDULING", "message": None},
            "owner": {"id": _entity_id(namespace), "name": namespace, "type": "user"},
            "initiator": {"type": "user", "id": _entity_id(initiator), "name": initiator},
            "_created": now,
        }
        with self._lock:
            self._save(job)
        threading.Thread(target=self._run, args=(job_id, command, secret_values), daemon=True,
                         name=f"job-{job_id}").start()
        return self.public(job)

    def _run(self, job_id: str, command: list[str], secret_values: dict[str, str]) -> None:
        time.sleep(self.hub.job_schedule_delay)
        with self._lock:
            job = read_json(self._path(job_id))
            if job is None or job_id in self._cancelled:
                return
            env = {k: v for k, v in os.environ.items() if k not in _STRIPPED_ENV}
            env.update({str(k): str(v) for k, v in job["environment"].items()})
            env.update(secret_values)
            env.update({"JOB_ID": job_id, "ACCELERATOR": job["flavor"], "HF_ENDPOINT": self.hub.base_url,
                        "PYTHONUNBUFFERED": "1"})
            if self.hub.rules.current.gpu_machine:
                env["PATH"] = path_with_machine(self.hub.data_dir, job["flavor"], env.get("PATH"))
            if command[0] in ("python", "python3"):
                command = [sys.executable, *command[1:]]
            workdir = self.root / f"{job_id}.work"
            workdir.mkdir(exist_ok=True)
            log = open(self.log_path(job_id), "ab")
            try:
                proc = subprocess.Popen(command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
            except OSError as exc:
                log.write(f"{exc}\n".encode())
                log.close()
                self._finish(job_id, "ERROR", f"Could not start the command: {exc}")
                return
            self._procs[job_id] = proc
            job["status"] = {"stage": "RUNNING", "message": None}
            job["_started"] = self.hub.clock.now()
            job["startedAt"] = iso(job["_started"])
            self._save(job)
        timeout = job.get("timeoutSeconds")
        try:
            code = proc.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            code = _terminate(proc, self.hub.stop_grace)
            timed_out = True
        log.close()
        with self._lock:
            self._procs.pop(job_id, None)
            if job_id in self._cancelled:
                self._finish(job_id, "CANCELED", None)
            elif timed_out:
                self._finish(job_id, "ERROR", f"Job timed out after {timeout} seconds")
            elif code == 0:
                self._finish(job_id, "COMPLETED", None)
            else:
                self._finish(job_id, "ERROR", f"Job failed with exit code: {code}")

    def _finish(self, job_id: str, stage: str, message: str | None) -> None:
        job = read_json(self._path(job_id))
        if job is None or job["status"]["stage"] in TERMINAL:
            return
        job["status"] = {"stage": stage, "message": message}
        job["_finished"] = self.hub.clock.now()
        job["finishedAt"] = iso(job["_finished"])
        self._save(job)

    def cancel(self, namespace: str, job_id: str) -> dict:
        self.get(namespace, job_id)
        with self._lock:
            self._cancelled.add(job_id)
            proc = self._procs.get(job_id)
            if proc is None:
                self._finish(job_id, "CANCELED", None)
        if proc is not None:
            _terminate(proc, self.hub.stop_grace)
            # The runner thread records CANCELED once the process is gone.
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and self.get(namespace, job_id)["status"]["stage"] not in TERMINAL:
                time.sleep(0.02)
        return self.public(self.get(namespace, job_id))

    def close(self) -> None:
        with self._lock:
            procs = list(self._procs.items())
            self._cancelled.update(job_id for job_id, _ in procs)
        for _, proc in procs:
            _terminate(proc, self.hub.stop_grace)

    def log_events(self, job_id: str, tail: int | None = None) -> list[dict]:
        """Log lines as SSE events; each event carries the time its line was read."""
        try:
            text = self.log_path(job_id).read_text(errors="replace")
        except FileNotFoundError:
            text = ""
        job = read_json(self._path(job_id)) or {}
        lines = text.splitlines()
        if tail is not None:
            lines = lines[-tail:] if tail > 0 else []
        stamp = job.get("startedAt") or job.get("createdAt") or iso(self.hub.clock.now())
        events = [{"data": "===== Job started at " + stamp + " =====", "timestamp": stamp}]
        events += [{"data": line, "timestamp": stamp} for line in lines]
        return events


    def billing(self, namespace: str | None = None) -> dict:
        """Paid periods of every Job (of `namespace`), per started minute (billing.py)."""
        periods = []
        for path in sorted(self.root.glob("*.json")):
            job = read_json(path)
            if not job or not job.get("_started") or (namespace and job["owner"]["name"] != namespace):
                continue
            periods.append({"kind": "job", "id": job["id"], "namespace": job["owner"]["name"],
                            "flavor": job["flavor"], "start": job["_started"], "end": job.get("_finished")})
        return billing.summarize(periods, self.hub.clock.now(), jobs=True)


def _label_match(labels: dict, selector: str) -> bool:
    key, sep, value = selector.partition("=")
    return key in labels and (not sep or labels[key] == value)


def sse(events: list[dict]) -> bytes:
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)


__all__ = ["JobRunner", "JobNotFound", "TERMINAL", "sse"]
