"""Space runtime: the Hub's stage/hardware state machine, its replicas, sleep, and billing periods.

State machine (what the Hub shows through `/runtime`):

- A hardware request for another flavor, a restart, a push to a supervised Space's repo or a wake
  sets the stage to RUNNING_BUILDING while a replica runs (it keeps running, and billing, through
  the build) or BUILDING otherwise (`current` is None). After `boot_delay` seconds `current =
  requested` and a new replica starts: the stage becomes APP_STARTING then RUNNING for a
  supervised Space (its app runs as a child process), RUNNING at once otherwise.
- Replica overlap (rule `replica_overlap_s`): after a hardware switch the old replica keeps
  running that long while the new one starts; the runtime already says the new hardware. With no
  overlap (and after any other rebuild) the old replica is stopped just before the new starts.
- Requesting the flavor that is already current and running changes nothing (no restart), as on
  the Hub; only `sleepTimeSeconds` is applied.
- A change of a secret or a variable restarts the app (rule `restart_on_config`): APP_STARTING at
  once, the replica gets SIGTERM, a new one starts after `boot_delay`.
- Pause -> PAUSED (replicas stopped); it stays paused until a restart (a hardware request only
  records the flavor, a visit does nothing).
- A sleep time on cpu-basic is refused, at creation, with a hardware request or on its own (rule
  `fixed_cpu_basic_sleep`): 400 "Cannot change the sleep time for cpu-basic Spaces".
- Sleep (rule `sleep`): a running Space with no visit for its sleep time (cpu-basic and other free
  flavors: `cpu_basic_sleep_s`, 48 h; upgraded ones: their `gcTimeout`, never if unset or -1) goes
  to `sleep_stage` (SLEEPING or STOPPED) with its replicas stopped, `current` None and nothing
  billed. A visit of its page, a restart, a hardware request or a push wakes it (a new boot); the
  worker's own API calls are no visits. Time is the emulator clock (tests move it).
- A supervised child that exits on its own -> RUNTIME_ERROR (the Hub reports exit code 0 the same
  way: "application does not seem to be initialized").

Every change of (current, requested, stage) is appended to a timeline; every replica is a billing
period (billing.py). `boots` counts replicas started and `restarts` counts them per reason
(hardware, restart, config, commit, wake, supervise, restore) after the first boot.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from . import billing
from .hardware import SPACE_FLAVORS, is_paid
from .launch import checkout_root, launch_plan, remove_checkout, subdomain
from .ports import PortForwarder
from .storage import StoreError, atomic_write_json, iso, read_json
from .supervisor import Supervisor, reap_orphans

if TYPE_CHECKING:
    from .hub import EmulatedHub

RUNNING_STAGES = {"RUNNING", "RUNNING_BUILDING", "RUNNING_APP_STARTING", "APP_STARTING"}
TRANSITIONAL = {"BUILDING", "RUNNING_BUILDING", "APP_STARTING", "RUNNING_APP_STARTING"}
SLEPT_STAGES = {"SLEEPING", "STOPPED"}
# The Hub's answer to a custom sleep time on cpu-basic (huggingface/autotrain-advanced#844).
CPU_BASIC_SLEEP_REFUSAL = "Cannot change the sleep time for cpu-basic Spaces"
SLEEP_CHECK_EVERY_S = 0.5

__all__ = ["SpaceManager", "SpaceError", "subdomain", "RUNNING_STAGES"]


class SpaceError(Exception):
    status = 400


class SpaceManager:
    def __init__(self, hub: "EmulatedHub"):
        self.hub = hub
        self._lock = threading.RLock()
        self._gen: dict[str, int] = {}
        self._closed = False
        self._tokens: dict[str, int] = {}
        self._private_ports: dict[str, int] = {}
        self._forwarders: dict[str, PortForwarder] = {}
        # What the sleep checks need of each Space, kept at every save: deadlines follow the rules as
        # they are when checked, so a rule changed at run time applies at once.
        self._activity: dict[str, dict] = {}
        self._ticker: threading.Thread | None = None
        self.supervisor = Supervisor(self._child_exited)
        hub.clock.on_advance(self.tick)

    # -- persistence --------------------------------------------------------------------------
    def _path(self, space_id: str) -> Path:
        return self.hub.store._repo_dir("space", space_id) / "space.json"

    def load(self, space_id: str) -> dict:
        self.hub.store.get("space", space_id)
        state = read_json(self._path(space_id))
        if state is None:
            raise SpaceError(f"{space_id} has no runtime state")
        state.setdefault("replicas", [])
        state.setdefault("restarts", {})
        state.setdefault("boots", len(state["replicas"]))
        state.setdefault("lastActivity", self.hub.clock.now())
        if "nextReplica" not in state:
            # Written by an emulator that predates replicas: what ran is one replica since now.
            state["nextReplica"] = 1
            if state["stage"] in RUNNING_STAGES and state["current"]:
                self._add_replica(state, "restore", count=False)
        return state

    def _save(self, space_id: str, state: dict) -> None:
        atomic_write_json(self._path(space_id), state, self.hub.store.fsync)
        self._activity[space_id] = {k: state.get(k) for k in ("stage", "current", "gcTimeout", "lastActivity")}

    def _record(self, state: dict) -> None:
        """Append to the timeline if (current, requested, stage) changed."""
        entry = {"hardware": state["current"], "requested": state["requested"], "stage": state["stage"]}
        timeline = state.setdefault("timeline", [])
        if timeline and all(timeline[-1].get(k) == v for k, v in entry.items()):
            return
        now = self.hub.clock.now()
        timeline.append({"t": now, "time": iso(now), **entry})

    @contextlib.contextmanager
    def _editing(self, space_id: str) -> Iterator[dict]:
        """The Space's state, under the lock; saved when the block ends without an error."""
        with self._lock:
            state = self.load(space_id)
            yield state
            self._save(space_id, state)

    def _bump(self, space_id: str) -> int:
        """Invalidate pending boots of `space_id`; returns the new generation."""
        gen = self._gen[space_id] = self._gen.get(space_id, 0) + 1
        return gen

    # -- replicas -----------------------------------------------------------------------------
    @staticmethod
    def _open(state: dict) -> list[dict]:
        return [r for r in state["replicas"] if r["end"] is None]

    def _add_replica(self, state: dict, reason: str, count: bool = True) -> dict:
        now = self.hub.clock.now()
        replica = {"id": state["nextReplica"], "flavor": state["current"], "start": now, "end": None,
                   "reason": reason}
        state["nextReplica"] += 1
        state["replicas"].append(replica)
        if count:
            if state["boots"] > 0:
                state["restarts"][reason] = state["restarts"].get(reason, 0) + 1
            state["boots"] += 1
        state["lastActivity"] = now
        return replica

    def _end(self, state: dict, replica_ids: list[int]) -> None:
        now = self.hub.clock.now()
        for replica in state["replicas"]:
            if replica["id"] in replica_ids and replica["end"] is None:
                replica["end"] = now

    def _stop_processes(self, space_id: str, replica_ids: list[int], wait: bool = False) -> None:
        """SIGTERM (then SIGKILL) those replicas' processes; their periods must already be ended."""
        def stop():
            for rid in replica_ids:
                key = f"{space_id}#{rid}"
                self.supervisor.stop(key, self.hub.stop_grace)
                self._private_ports.pop(key, None)
                remove_checkout(self.hub, space_id, rid)

        if wait:
            stop()
        else:
            threading.Thread(target=stop, daemon=True, name=f"stop-{space_id}").start()

    def _retire_later(self, space_id: str, replica_ids: list[int], after_s: float) -> None:
        """End those replicas `after_s` seconds from now (the overlap of a hardware switch)."""
        def retire():
            time.sleep(after_s)
            with contextlib.suppress(StoreError, SpaceError):  # the Space was deleted meanwhile
                with self._editing(space_id) as state:
                    self._end(state, replica_ids)
            self._stop_processes(space_id, replica_ids, wait=True)

        threading.Thread(target=retire, daemon=True, name=f"overlap-{space_id}").start()

    def _stop_all(self, space_id: str, state: dict) -> None:
        """End every running replica now and stop its process in the background."""
        ids = [r["id"] for r in self._open(state)]
        self._end(state, ids)
        known = [int(k.rpartition("#")[2]) for k in self.supervisor.keys(space_id)]
        self._stop_processes(space_id, sorted(set(ids) | set(known)))

    def current_port(self, space_id: str) -> int | None:
        """The private port of the Space's newest running replica (where its public port forwards)."""
        keys = self.supervisor.keys(space_id)
        return self._private_ports.get(keys[-1]) if keys else None

    # -- lifecycle ----------------------------------------------------------------------------
    def create(self, space_id: str, body: dict) -> None:
        flavor = body.get("hardware") or "cpu-basic"
        self.check_flavor(flavor)
        now = self.hub.clock.now()
        stamp = iso(now)
        state = {
            "current": None,
            "requested": flavor,
            "stage": "BUILDING",
            "gcTimeout": body.get("sleepTimeSeconds"),
            "secrets": {s["key"]: {"value": s.get("value", ""), "description": s.get("description"),
                                   "updatedAt": stamp} for s in body.get("secrets") or []},
            "variables": {v["key"]: {"value": v.get("value", ""), "description": v.get("description"),
                                     "updatedAt": stamp} for v in body.get("variables") or []},
            "volumes": body.get("volumes") or None,
            "devMode": False,
            "hardwareRequests": 0,
            "supervise": {"checkout": True} if self.hub.supervise_repos else None,
            "timeline": [],
            "replicas": [],
            "nextReplica": 1,
            "boots": 0,
            "restarts": {},
            "lastActivity": now,
        }
        with self._lock:
            self._record(state)
            self._save(space_id, state)
            self._schedule_boot(space_id, "create")

    def start(self) -> None:
        """Resume what was in flight when the previous process stopped, and start the sleep checks."""
        for repo in self.hub.store.list("space"):
            reap_orphans(self.log_path(repo.id), repo.id)
            try:
                state = self.load(repo.id)
            except Exception:
                continue
            with self._lock:
                supervised = bool(state.get("supervise"))
                if supervised and (state.get("supervise") or {}).get("port"):
                    self._ensure_forwarder(repo.id, state["supervise"]["port"])
                if supervised and self._open(state):
                    # Their processes died with the previous emulator.
                    self._end(state, [r["id"] for r in self._open(state)])
                    state["stage"] = "BUILDING"
                    state["current"] = None
                    self._record(state)
                    self._schedule_boot(repo.id, "restore")
                elif state["stage"] in TRANSITIONAL:
                    self._schedule_boot(repo.id, "restore")
                self._save(repo.id, state)
        self._ticker = threading.Thread(target=self._tick_forever, daemon=True, name="space-sleep")
        self._ticker.start()

    def close(self) -> None:
        self._closed = True
        for forwarder in list(self._forwarders.values()):
            forwarder.close()
        self.supervisor.stop_all(self.hub.stop_grace)

    def delete(self, space_id: str) -> None:
        with self._lock:
            self._bump(space_id)
            self._activity.pop(space_id, None)
            forwarder = self._forwarders.pop(space_id, None)
        if forwarder:
            forwarder.close()
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

    def info(self, space_id: str) -> dict:
        """The runtime plus what only the emulator knows: replicas, boots, restarts, last visit."""
        state = self.load(space_id)
        return {**self.runtime(space_id, state), "boots": state["boots"], "restarts": state["restarts"],
                "replicas_running": [r["id"] for r in self._open(state)],
                "last_activity": state["lastActivity"], "sleeps_at": self._sleep_deadline(state)}

    # -- rules ----------------------------------------------------------------------------------
    @staticmethod
    def check_flavor(flavor: str) -> None:
        if flavor not in SPACE_FLAVORS:
            raise SpaceError(f"Invalid hardware flavor {flavor!r}; known: {', '.join(SPACE_FLAVORS)}")

    def check_sleep_time(self, flavor: str, seconds: Any) -> None:
        """The Hub refuses any custom sleep time on cpu-basic (400)."""
        if seconds is not None and flavor == "cpu-basic" and self.hub.rules.current.fixed_cpu_basic_sleep:
            raise SpaceError(CPU_BASIC_SLEEP_REFUSAL)

    def check_new(self, space_id: str, sdk: str | None, body: dict) -> None:
        """The Hub's rules for a Space about to be created or duplicated from `body` (`hardware`,
        `sleepTimeSeconds`): a Space flavor, no sleep time on cpu-basic, the plan and the payment
        method. Raises SpaceError (400) or HubRefusal (402/403) before anything is written."""
        flavor = body.get("hardware") or "cpu-basic"
        self.check_flavor(flavor)
        self.check_sleep_time(flavor, body.get("sleepTimeSeconds"))
        self.check_hosting(space_id, sdk, flavor)

    def check_hosting(self, space_id: str, sdk: str | None, flavor: str) -> None:
        """Plan gates for hosting `space_id` on `flavor` (accounts.py); nothing when `plans` is off."""
        if not self.hub.rules.current.plans:
            return
        namespace = space_id.split("/", 1)[0]
        accounts = self.hub.accounts
        zero = 0
        if flavor == "zero-a10g":
            for repo in self.hub.store.list("space"):
                if repo.ns == namespace and repo.id != space_id:
                    state = read_json(self._path(repo.id)) or {}
                    zero += state.get("requested") == "zero-a10g"
        accounts.check_space_hosting(namespace, sdk, flavor, zero)
        accounts.check_hardware_payment(namespace, flavor)

    def _sleep_deadline(self, state: dict) -> float | None:
        """When this Space goes to sleep if nobody visits (emulator clock), or None."""
        rules = self.hub.rules.current
        if not rules.sleep or state["stage"] not in RUNNING_STAGES:
            return None
        if is_paid(state["current"]):
            gc = state.get("gcTimeout")
            timeout = gc if isinstance(gc, (int, float)) and gc > 0 else None
        else:
            timeout = rules.cpu_basic_sleep_s
        return state["lastActivity"] + timeout if timeout else None

    def _tick_forever(self) -> None:
        while not self._closed:
            time.sleep(SLEEP_CHECK_EVERY_S)
            try:
                self.tick(self.hub.clock.now())
            except Exception:  # a failed check must not end the checks
                pass

    def tick(self, now: float) -> None:
        """Put to sleep every Space whose sleep deadline has passed at `now`."""
        if not self.hub.rules.current.sleep:
            return
        for space_id, activity in list(self._activity.items()):
            deadline = self._sleep_deadline(activity)
            if deadline is not None and now >= deadline:
                self._sleep(space_id)

    def _sleep(self, space_id: str) -> None:
        with self._lock:
            try:
                state = self.load(space_id)
            except (StoreError, SpaceError):  # deleted meanwhile
                self._activity.pop(space_id, None)
                return
            deadline = self._sleep_deadline(state)
            if deadline is None or self.hub.clock.now() < deadline:
                return
            self._bump(space_id)
            self._stop_all(space_id, state)
            state["stage"] = self.hub.rules.current.sleep_stage
            state["current"] = None
            state.pop("errorMessage", None)
            self._record(state)
            self._save(space_id, state)

    # -- transitions --------------------------------------------------------------------------
    def request_hardware(self, space_id: str, flavor: str, sleep_time: int | None = None) -> dict:
        self.check_flavor(flavor)
        self.check_sleep_time(flavor, sleep_time)
        sdk = self.hub.store.get("space", space_id).meta.get("sdk")
        self.check_hosting(space_id, sdk, flavor)
        with self._editing(space_id) as state:
            if sleep_time is not None:
                state["gcTimeout"] = sleep_time
            state["hardwareRequests"] = state.get("hardwareRequests", 0) + 1
            already = (state["current"] == flavor and state["requested"] == flavor
                       and state["stage"] in RUNNING_STAGES)
            if not already:
                state["requested"] = flavor
                if state["stage"] == "PAUSED":
                    self._record(state)
                else:
                    self._begin_build(space_id, state, "hardware")
        return self.runtime(space_id, state)

    def set_sleep_time(self, space_id: str, seconds: int) -> dict:
        with self._editing(space_id) as state:
            self.check_sleep_time(state["requested"], seconds)
            state["gcTimeout"] = seconds
        return self.runtime(space_id, state)

    def set_volumes(self, space_id: str, volumes: list[dict] | None) -> None:
        """What the runtime reports as mounted; None removes them all."""
        with self._editing(space_id) as state:
            state["volumes"] = volumes

    def set_key(self, space_id: str, kind: str, key: str, entry: dict | None) -> dict:
        """Set (or, with None, delete) one secret or variable and restart the app (rule
        `restart_on_config`); returns all of that kind."""
        with self._editing(space_id) as state:
            items = state.setdefault(kind, {})
            if entry is None:
                items.pop(key, None)
            else:
                items[key] = entry
            if self.hub.rules.current.restart_on_config:
                self._restart_for_config(space_id, state)
        return items

    def _restart_for_config(self, space_id: str, state: dict) -> None:
        stage = state["stage"]
        if stage in ("PAUSED", "BUILDING", "RUNNING_BUILDING"):
            return  # paused stays paused; a boot under way reads the new values anyway
        if not self._open(state):
            self._begin_build(space_id, state, "config")
            return
        gen = self._bump(space_id)
        self._stop_all(space_id, state)
        replica = self._add_replica(state, "config")
        state["stage"] = "APP_STARTING"
        state.pop("errorMessage", None)
        self._record(state)
        deadline = time.monotonic() + self.hub.boot_delay
        threading.Thread(target=self._boot, args=(space_id, gen, deadline, "config", replica["id"]),
                         daemon=True, name=f"restart-{space_id}").start()

    def pause(self, space_id: str) -> dict:
        with self._editing(space_id) as state:
            self._bump(space_id)
            self._stop_all(space_id, state)
            state["stage"] = "PAUSED"
            state.pop("errorMessage", None)
            self._record(state)
        return self.runtime(space_id, state)

    def restart(self, space_id: str, factory: bool = False) -> dict:
        with self._editing(space_id) as state:
            self._begin_build(space_id, state, "restart")
        return self.runtime(space_id, state)

    def visit(self, space_id: str) -> dict:
        """Someone opened the Space's page: it counts as activity, and wakes a sleeping Space."""
        with self._editing(space_id) as state:
            state["lastActivity"] = self.hub.clock.now()
            if state["stage"] in SLEPT_STAGES:
                self._begin_build(space_id, state, "wake")
        return self.runtime(space_id, state)

    def on_commit(self, space_id: str) -> None:
        with self._editing(space_id) as state:
            if state.get("supervise") and state["stage"] != "PAUSED":
                self._begin_build(space_id, state, "commit")

    def set_dev_mode(self, space_id: str, enabled: bool) -> dict:
        with self._editing(space_id) as state:
            state["devMode"] = bool(enabled)
        return self.runtime(space_id, state)

    def _begin_build(self, space_id: str, state: dict, reason: str) -> None:
        running = bool(self._open(state))
        if not running:
            state["current"] = None
        state["stage"] = "RUNNING_BUILDING" if running else "BUILDING"
        state.pop("errorMessage", None)
        self._record(state)
        self._schedule_boot(space_id, reason)

    def _schedule_boot(self, space_id: str, reason: str) -> None:
        gen = self._bump(space_id)
        deadline = time.monotonic() + self.hub.boot_delay
        threading.Thread(target=self._boot, args=(space_id, gen, deadline, reason), daemon=True,
                         name=f"boot-{space_id}").start()

    def _boot(self, space_id: str, gen: int, deadline: float, reason: str, replica_id: int | None = None) -> None:
        """After the boot delay: the requested flavor becomes current and a replica starts (or, for a
        config restart, the replica already counted gets its process)."""
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
            old = [r for r in self._open(state) if r["id"] != replica_id]
            switch = reason == "hardware" and any(r["flavor"] != state["requested"] for r in old)
            overlap = self.hub.rules.current.replica_overlap_s if switch else 0.0
        if old and overlap <= 0:
            # No overlap: the old replica is gone before the new one starts.
            with self._lock:
                if self._gen.get(space_id) != gen:
                    return
                state = self.load(space_id)
                self._end(state, [r["id"] for r in old])
                self._save(space_id, state)
            self._stop_processes(space_id, [r["id"] for r in old], wait=True)
        with self._lock:
            if self._closed or self._gen.get(space_id) != gen:
                return
            try:
                state = self.load(space_id)
            except Exception:
                return
            supervised = bool(state.get("supervise"))
            if replica_id is None:
                state["current"] = state["requested"]
                replica = self._add_replica(state, reason)
            else:
                replica = next(r for r in state["replicas"] if r["id"] == replica_id)
            try:
                plan = launch_plan(self.hub, space_id, state, replica["id"]) if supervised else None
            except Exception as exc:  # an unreadable checkout is the Space's runtime error, not ours
                plan, state["errorMessage"] = None, f"Could not prepare the app: {exc}"
            if supervised and plan is None:
                self._end(state, [replica["id"]])
                state["stage"] = "RUNTIME_ERROR" if state.get("errorMessage") else "NO_APP_FILE"
            else:
                state["stage"] = "APP_STARTING" if supervised else "RUNNING"
            self._record(state)
            if old and overlap > 0:
                self._retire_later(space_id, [r["id"] for r in old], overlap)
            self._save(space_id, state)
            if plan is None:
                return
            key = f"{space_id}#{replica['id']}"
            command, cwd, env = plan
            if env.get("PORT"):
                self._private_ports[key] = int(env["PORT"])
            try:
                self._tokens[key] = self.supervisor.start(key, command, cwd, env, self.log_path(space_id))
            except OSError as exc:
                self._end(state, [replica["id"]])
                state["stage"] = "RUNTIME_ERROR"
                state["errorMessage"] = f"Could not start the app: {exc}"
                self._record(state)
                self._save(space_id, state)
                return
        time.sleep(self.hub.app_start_delay)
        with self._lock:
            if self._gen.get(space_id) != gen or not self.supervisor.running(key):
                return
            state = self.load(space_id)
            if state["stage"] == "APP_STARTING":
                state["stage"] = "RUNNING"
                self._record(state)
                self._save(space_id, state)

    def _child_exited(self, key: str, token: int, code: int) -> None:
        space_id, _, rid = key.rpartition("#")
        with self._lock:
            if self._closed or self._tokens.get(key) != token:
                return
            try:
                state = self.load(space_id)
            except Exception:
                return
            newest = state["replicas"][-1]["id"] if state["replicas"] else None
            self._end(state, [int(rid)])
            if int(rid) == newest and state["stage"] not in ("PAUSED", "BUILDING", "RUNNING_BUILDING"):
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
            if config is not None and config.get("port"):
                self._ensure_forwarder(space_id, int(config["port"]))
            state["supervise"] = config
            if config is None:
                self._bump(space_id)
                ids = [int(k.rpartition("#")[2]) for k in self.supervisor.keys(space_id)]
                self._stop_processes(space_id, ids)
                forwarder = self._forwarders.pop(space_id, None)
                if forwarder:
                    forwarder.close()
                if state["stage"] not in ("PAUSED",):
                    state["stage"] = "RUNNING" if state["current"] else state["stage"]
                    self._record(state)
            elif state["stage"] != "PAUSED":
                self._begin_build(space_id, state, "supervise")
            self._save(space_id, state)
            return self.runtime(space_id, state)

    def _ensure_forwarder(self, space_id: str, port: int) -> None:
        current = self._forwarders.get(space_id)
        if current is not None and current.port == port:
            return
        if current is not None:
            current.close()
        try:
            self._forwarders[space_id] = PortForwarder(port, lambda: self.current_port(space_id))
        except OSError as exc:
            raise SpaceError(f"port {port} cannot be served: {exc}") from None

    def log_path(self, space_id: str) -> Path:
        return self.hub.data_dir / "spaces-logs" / (space_id.replace("/", "--") + ".log")

    def checkout_dir(self, space_id: str) -> Path:
        return checkout_root(self.hub, space_id)

    # -- billing --------------------------------------------------------------------------------
    def periods(self, space_id: str, state: dict | None = None) -> list[dict]:
        state = state or self.load(space_id)
        return [{"kind": "replica", "id": f"{space_id}#{r['id']}", "space": space_id, "flavor": r["flavor"],
                 "start": r["start"], "end": r["end"]} for r in state["replicas"] if r["flavor"]]

    def billing(self, space_id: str, now: float | None = None) -> dict:
        state = self.load(space_id)
        now = self.hub.clock.now() if now is None else now
        timeline = state.get("timeline", [])
        changes = 0
        previous_hw = None
        for entry in timeline:
            hw = entry["hardware"]
            if hw is not None:
                if previous_hw is not None and hw != previous_hw:
                    changes += 1
                previous_hw = hw
        return {
            "space": space_id,
            "now": now,
            "timeline": timeline,
            **billing.summarize(self.periods(space_id, state), now),
            "hardware_changes": changes,
            "hardware_requests": state.get("hardwareRequests", 0),
            "boots": state["boots"],
            "restarts": state["restarts"],
            "current": state["current"],
            "requested": state["requested"],
            "stage": state["stage"],
        }

