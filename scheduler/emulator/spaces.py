"""Space runtime: the Hub's stage/hardware state machine, its billing timeline, and supervision.

State machine (what the Hub shows through `/runtime`):

- A hardware request for a different flavor (or a restart) sets `requested`, and the stage
  becomes RUNNING_BUILDING if the Space was running (old hardware keeps being `current`, and
  billed) or BUILDING otherwise (`current` is None: nothing runs). After `boot_delay` seconds,
  `current = requested` and the stage becomes RUNNING, or APP_STARTING then RUNNING when the
  Space is supervised (its app runs as a child process).
- Requesting the flavor that is already current and running changes nothing (no restart), as
  on the Hub; only `sleepTimeSeconds` is applied.
- Pause -> PAUSED (child stopped) until a restart or a hardware request.
- A supervised child that exits on its own -> RUNTIME_ERROR (the Hub reports exit code 0 the same
  way: "application does not seem to be initialized").
- A commit to a supervised Space's repo rebuilds it, like a push to the Hub.

Every change of (current hardware, requested hardware, stage) is appended to a timeline stored
with the Space; billing integrates it: seconds on a paid `current` flavor while the stage is not
PAUSED/STOPPED.
"""

from __future__ import annotations

import re
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .hardware import FLAVORS, is_paid, price_per_hour
from .storage import atomic_write_json, iso, read_json
from .supervisor import Supervisor, reap_orphan

if TYPE_CHECKING:
    from .hub import EmulatedHub

RUNNING_STAGES = {"RUNNING", "RUNNING_BUILDING", "RUNNING_APP_STARTING", "APP_STARTING"}
UNBILLED_STAGES = {"PAUSED", "STOPPED"}
TRANSITIONAL = {"BUILDING", "RUNNING_BUILDING", "APP_STARTING", "RUNNING_APP_STARTING"}


class SpaceError(Exception):
    status = 400


class SpaceManager:
    def __init__(self, hub: "EmulatedHub"):
        self.hub = hub
        self._lock = threading.RLock()
        self._gen: dict[str, int] = {}
        self._closed = False
        self._tokens_by_space: dict[str, int] = {}
        self.supervisor = Supervisor(self._child_exited)

    # -- persistence --------------------------------------------------------------------------
    def _path(self, space_id: str) -> Path:
        return self.hub.store._repo_dir("space", space_id) / "space.json"

    def load(self, space_id: str) -> dict:
        self.hub.store.get("space", space_id)
        state = read_json(self._path(space_id))
        if state is None:
            raise SpaceError(f"{space_id} has no runtime state")
        return state

    def _save(self, space_id: str, state: dict) -> None:
        atomic_write_json(self._path(space_id), state, self.hub.store.fsync)

    def _record(self, state: dict) -> None:
        """Append to the timeline if (current, requested, stage) changed."""
        entry = {"hardware": state["current"], "requested": state["requested"], "stage": state["stage"]}
        timeline = state.setdefault("timeline", [])
        if timeline and all(timeline[-1].get(k) == v for k, v in entry.items()):
            return
        now = time.time()
        timeline.append({"t": now, "time": iso(now), **entry})

    # -- lifecycle ----------------------------------------------------------------------------
    def create(self, space_id: str, body: dict) -> None:
        flavor = body.get("hardware") or "cpu-basic"
        self._check_flavor(flavor)
        now = iso(time.time())
        state = {
            "current": None,
            "requested": flavor,
            "stage": "BUILDING",
            "gcTimeout": body.get("sleepTimeSeconds"),
            "secrets": {s["key"]: {"value": s.get("value", ""), "description": s.get("description"),
                                   "updatedAt": now} for s in body.get("secrets") or []},
            "variables": {v["key"]: {"value": v.get("value", ""), "description": v.get("description"),
                                     "updatedAt": now} for v in body.get("variables") or []},
            "volumes": body.get("volumes") or None,
            "devMode": False,
            "hardwareRequests": 0,
            "supervise": None,
            "timeline": [],
        }
        if self.hub.supervise_repos:
            state["supervise"] = {"checkout": True}
        with self._lock:
            self._record(state)
            self._save(space_id, state)
            self._schedule_boot(space_id)

    def restore(self) -> None:
        """After a restart of the emulator: finish interrupted boots and restart supervised apps."""
        for repo in self.hub.store.list("space"):
            reap_orphan(self.log_path(repo.id).with_suffix(".pid"), repo.id)
            try:
                state = self.load(repo.id)
            except Exception:
                continue
            with self._lock:
                if state["stage"] in TRANSITIONAL or (state.get("supervise") and state["stage"] == "RUNNING"):
                    if state["stage"] == "RUNNING":
                        state["stage"] = "RUNNING_BUILDING"
                        self._record(state)
                        self._save(repo.id, state)
                    self._schedule_boot(repo.id)

    def close(self) -> None:
        self._closed = True
        self.supervisor.stop_all(self.hub.stop_grace)

    def delete(self, space_id: str) -> None:
        with self._lock:
            self._gen[space_id] = self._gen.get(space_id, 0) + 1
        self.supervisor.stop(space_id, self.hub.stop_grace)

    # -- runtime JSON -------------------------------------------------------------------------
    def runtime(self, space_id: str, state: dict | None = None) -> dict:
        state = state or self.load(space_id)
        out: dict[str, Any] = {
            "stage": state["stage"],
            "hardware": {"current": state["current"], "requested": state["requested"]},
            "gcTimeout": state.get("gcTimeout"),
            "storage": None,
            "devMode": bool(state.get("devMode")),
            "replicas": {"current": 1 if state["stage"] in RUNNING_STAGES else 0, "requested": 1},
        }
        if state.get("volumes"):
            out["volumes"] = state["volumes"]
        if state.get("errorMessage"):
            out["errorMessage"] = state["errorMessage"]
        return out

    # -- transitions --------------------------------------------------------------------------
    def _check_flavor(self, flavor: str) -> None:
        if flavor not in FLAVORS:
            raise SpaceError(f"Invalid hardware flavor {flavor!r}; known: {', '.join(FLAVORS)}")

    def request_hardware(self, space_id: str, flavor: str, sleep_time: int | None = None) -> dict:
        self._check_flavor(flavor)
        with self._lock:
            state = self.load(space_id)
            if sleep_time is not None:
                state["gcTimeout"] = sleep_time
            state["hardwareRequests"] = state.get("hardwareRequests", 0) + 1
            already = (state["current"] == flavor and state["requested"] == flavor
                       and state["stage"] in RUNNING_STAGES)
            if not already:
                state["requested"] = flavor
                self._begin_build(space_id, state)
            self._save(space_id, state)
            return self.runtime(space_id, state)

    def set_sleep_time(self, space_id: str, seconds: int) -> dict:
        with self._lock:
            state = self.load(space_id)
            state["gcTimeout"] = seconds
            self._save(space_id, state)
            return self.runtime(space_id, state)

    def set_volumes(self, space_id: str, volumes: list[dict] | None) -> None:
        """What the runtime reports as mounted; None removes them all."""
        with self._lock:
            state = self.load(space_id)
            state["volumes"] = volumes
            self._save(space_id, state)

    def set_key(self, space_id: str, kind: str, key: str, entry: dict | None) -> dict:
        """Set (or, with None, delete) one secret or variable; returns all of that kind."""
        with self._lock:
            state = self.load(space_id)
            items = state.setdefault(kind, {})
            if entry is None:
                items.pop(key, None)
            else:
                items[key] = entry
            self._save(space_id, state)
            return items

    def pause(self, space_id: str) -> dict:
        with self._lock:
            state = self.load(space_id)
            self._gen[space_id] = self._gen.get(space_id, 0) + 1
            state["stage"] = "PAUSED"
            state.pop("errorMessage", None)
            self._record(state)
            self._save(space_id, state)
        threading.Thread(target=self.supervisor.stop, args=(space_id, self.hub.stop_grace), daemon=True).start()
        return self.runtime(space_id, state)

    def restart(self, space_id: str, factory: bool = False) -> dict:
        with self._lock:
            state = self.load(space_id)
            self._begin_build(space_id, state)
            self._save(space_id, state)
            return self.runtime(space_id, state)

    def on_commit(self, space_id: str) -> None:
        with self._lock:
            state = self.load(space_id)
            if state.get("supervise") and state["stage"] != "PAUSED":
                self._begin_build(space_id, state)
                self._save(space_id, state)

    def set_dev_mode(self, space_id: str, enabled: bool) -> dict:
        with self._lock:
            state = self.load(space_id)
            state["devMode"] = bool(enabled)
            self._save(space_id, state)
            return self.runtime(space_id, state)

    def _begin_build(self, space_id: str, state: dict) -> None:
        running = state["stage"] in RUNNING_STAGES
        if not running:
            state["current"] = None
        state["stage"] = "RUNNING_BUILDING" if running else "BUILDING"
        state.pop("errorMessage", None)
        self._record(state)
        self._schedule_boot(space_id)

    def _schedule_boot(self, space_id: str) -> None:
        gen = self._gen[space_id] = self._gen.get(space_id, 0) + 1
        deadline = time.monotonic() + self.hub.boot_delay
        threading.Thread(target=self._boot, args=(space_id, gen, deadline), daemon=True,
                         name=f"boot-{space_id}").start()

    def _boot(self, space_id: str, gen: int, deadline: float) -> None:
        # The old child goes first (as on the Hub a hardware change replaces the container).
        self.supervisor.stop(space_id, self.hub.stop_grace)
        delay = deadline - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        with self._lock:
            if self._closed or self._gen.get(space_id) != gen:
                return
            try:
                state = self.load(space_id)
            except Exception:
                return
            state["current"] = state["requested"]
            plan = self._launch_plan(space_id, state) if state.get("supervise") else None
            if plan is None:
                state["stage"] = "NO_APP_FILE" if state.get("supervise") else "RUNNING"
                self._record(state)
                self._save(space_id, state)
                return
            state["stage"] = "APP_STARTING"
            self._record(state)
            self._save(space_id, state)
            command, cwd, env = plan
            try:
                token = self.supervisor.start(space_id, command, cwd, env, self.log_path(space_id))
            except OSError as exc:
                state["stage"] = "RUNTIME_ERROR"
                state["errorMessage"] = f"Could not start the app: {exc}"
                self._record(state)
                self._save(space_id, state)
                return
            self._tokens_by_space[space_id] = token
        time.sleep(self.hub.app_start_delay)
        with self._lock:
            if self._gen.get(space_id) != gen or not self.supervisor.running(space_id):
                return
            state = self.load(space_id)
            if state["stage"] == "APP_STARTING":
                state["stage"] = "RUNNING"
                self._record(state)
                self._save(space_id, state)

    def _child_exited(self, space_id: str, token: int, code: int) -> None:
        with self._lock:
            if self._closed or self._tokens_by_space.get(space_id) != token:
                return
            try:
                state = self.load(space_id)
            except Exception:
                return
            if state["stage"] in ("PAUSED", "BUILDING", "RUNNING_BUILDING"):
                return
            state["stage"] = "RUNTIME_ERROR"
            state["errorMessage"] = f"Exit code: {code}. Reason: the application process exited."
            self._record(state)
            self._save(space_id, state)

    # -- supervision ----------------------------------------------------------------------------
    def supervise(self, space_id: str, config: dict | None) -> dict:
        """Set (or clear, with None) how this Space's app runs, then rebuild it."""
        if config is not None:
            command = config.get("command")
            if command is not None and (not isinstance(command, list) or not all(isinstance(c, str) for c in command)):
                raise SpaceError("command must be a list of strings")
            config = {k: config[k] for k in ("command", "cwd", "env", "port") if config.get(k) is not None}
            config.setdefault("checkout", "cwd" not in config)
        with self._lock:
            state = self.load(space_id)
            state["supervise"] = config
            if config is None:
                self._gen[space_id] = self._gen.get(space_id, 0) + 1
                threading.Thread(target=self.supervisor.stop, args=(space_id, self.hub.stop_grace),
                                 daemon=True).start()
                if state["stage"] not in ("PAUSED",):
                    state["stage"] = "RUNNING" if state["current"] else state["stage"]
                    self._record(state)
            elif state["stage"] != "PAUSED":
                self._begin_build(space_id, state)
            self._save(space_id, state)
            return self.runtime(space_id, state)

    def log_path(self, space_id: str) -> Path:
        return self.hub.data_dir / "spaces-logs" / (space_id.replace("/", "--") + ".log")

    def checkout_dir(self, space_id: str) -> Path:
        return self.hub.data_dir / "spaces-checkout" / space_id.replace("/", "--")

    def _launch_plan(self, space_id: str, state: dict) -> tuple[list[str], Path, dict] | None:
        cfg = state["supervise"] or {}
        store = self.hub.store
        files = store.resolve("space", space_id, "main").tree
        app_files = {p: m for p, m in files.items() if p != ".gitattributes"}
        command = cfg.get("command")
        if cfg.get("cwd"):
            cwd = Path(cfg["cwd"])
        elif app_files:
            cwd = self.checkout_dir(space_id)
            if cwd.exists():
                shutil.rmtree(cwd)
            for path, meta in app_files.items():
                target = cwd / path
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(store.blob_path(meta["oid"]), target)
        elif command:
            cwd = self.hub.data_dir
        else:
            return None
        if not command:
            app_file = _app_file(cwd / "README.md")
            if not (cwd / app_file).exists():
                return None
            command = [sys.executable, app_file]
        command = [sys.executable if c in ("python", "python3") and i == 0 else c for i, c in enumerate(command)]
        ns, name = space_id.split("/", 1)
        port = cfg.get("port")
        env = {
            "SYSTEM": "spaces",
            "SPACE_ID": space_id,
            "SPACE_AUTHOR_NAME": ns,
            "SPACE_REPO_NAME": name,
            "SPACE_HOST": f"{subdomain(space_id)}.hf.space",
            "SPACE_HARDWARE": state["current"] or "",
            "HF_ENDPOINT": self.hub.base_url,
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "GRADIO_ANALYTICS_ENABLED": "False",
            "PYTHONUNBUFFERED": "1",
        }
        if port:
            env.update({"PORT": str(port), "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1"})
        env.update({k: v["value"] for k, v in (state.get("variables") or {}).items()})
        env.update({k: v["value"] for k, v in (state.get("secrets") or {}).items()})
        env.update(cfg.get("env") or {})
        return list(command), cwd, env

    # -- billing --------------------------------------------------------------------------------
    def billing(self, space_id: str, now: float | None = None) -> dict:
        state = self.load(space_id)
        now = time.time() if now is None else now
        timeline = state.get("timeline", [])
        seconds: dict[str, float] = {}
        changes = 0
        previous_hw = None
        for i, entry in enumerate(timeline):
            end = timeline[i + 1]["t"] if i + 1 < len(timeline) else now
            hw = entry["hardware"]
            if hw and is_paid(hw) and entry["stage"] not in UNBILLED_STAGES:
                seconds[hw] = seconds.get(hw, 0.0) + max(0.0, end - entry["t"])
            if hw is not None:
                if previous_hw is not None and hw != previous_hw:
                    changes += 1
                previous_hw = hw
        cost = {hw: round(s / 3600 * price_per_hour(hw), 10) for hw, s in seconds.items()}
        return {
            "space": space_id,
            "now": now,
            "timeline": timeline,
            "billed_seconds": {k: round(v, 3) for k, v in seconds.items()},
            "cost_usd": cost,
            "total_cost_usd": round(sum(cost.values()), 10),
            "hardware_changes": changes,
            "hardware_requests": state.get("hardwareRequests", 0),
            "current": state["current"],
            "requested": state["requested"],
            "stage": state["stage"],
        }


def subdomain(space_id: str) -> str:
    return re.sub(r"[^a-z0-9-]", "-", space_id.replace("/", "-").lower())


def _app_file(readme: Path) -> str:
    try:
        text = readme.read_text(errors="replace")
    except OSError:
        return "app.py"
    if text.startswith("---"):
        front = text.split("---", 2)[1] if text.count("---") >= 2 else ""
        m = re.search(r"^app_file:\s*['\"]?([^'\"\n]+?)['\"]?\s*$", front, re.M)
        if m:
            return m.group(1)
    return "app.py"
