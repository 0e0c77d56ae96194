"""Run the emulator: in a background thread of this process, or as a `python -m` subprocess."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from .app import create_app
from .faults import DroppedResponse, FaultConfig
from .hub import EmulatedHub
from .ports import free_port
from .rules import Rules

_PROJECT_ROOT = Path(__file__).resolve().parents[2]


class _HideDroppedResponses(logging.Filter):
    """A response cut on purpose is not an error worth a traceback in the server log."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        while exc is not None:
            if isinstance(exc, DroppedResponse):
                return False
            # An exception group (Python 3.11+, from the server's task group) wraps the cut.
            grouped = getattr(exc, "exceptions", None)
            exc = exc.__cause__ or exc.__context__ or (grouped[0] if isinstance(grouped, tuple) and grouped else None)
        return True


def install_log_filter() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _HideDroppedResponses) for f in logger.filters):
        logger.addFilter(_HideDroppedResponses())


class _NoDelayH11Protocol(H11Protocol):
    """Headers and body go out as two writes; with Nagle on, the body waits for the client's delayed
    ACK (about 40 ms on loopback) and every request with a body costs 40 ms."""

    def connection_made(self, transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)


def uvicorn_config(app, host: str, port: int, **kw: Any) -> uvicorn.Config:
    # The access log is off: it would be the one place a request line with a token could leak.
    # uvicorn's own Date header is refreshed about once a second; the log routes send an exact one
    # because the client cuts the log replay at Date + 1 s.
    return uvicorn.Config(app, host=host, port=port, access_log=False, log_level="warning",
                          timeout_graceful_shutdown=3, date_header=False, http=_NoDelayH11Protocol, **kw)


def bind_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


class EmulatorHandle:
    """An emulator served by uvicorn in a daemon thread. `.url`, `.hub` (state), `.app`, `.stop()`."""

    def __init__(self, hub: EmulatedHub, app, server: uvicorn.Server, thread: threading.Thread, url: str):
        self.hub, self.app, self._server, self._thread, self.url = hub, app, server, thread, url

    @property
    def data_dir(self) -> Path:
        return self.hub.data_dir

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def set_faults(self, **changes: Any) -> FaultConfig:
        """Change fault injection at run time (same as POST /_emulator/faults)."""
        return self.hub.faults.update(changes)

    def set_rules(self, changes: "str | dict[str, Any] | None" = None, **kw: Any) -> Rules:
        """Change the Hub's rules at run time (same as POST /_emulator/rules); returns them."""
        if changes:
            self.hub.rules.update(changes)
        return self.hub.rules.update(kw)

    def advance_clock(self, seconds: float) -> float:
        """Move the emulator clock forward (same as POST /_emulator/clock); returns its new time."""
        return self.hub.clock.advance(seconds)

    def set_user(self, name: str, **changes: Any) -> dict:
        """Create or change an account (same as POST /_emulator/users/{name})."""
        return self.hub.accounts.update(name, changes).public()

    def billing(self, space_id: str) -> dict:
        return self.hub.spaces.billing(space_id)

    @property
    def stats(self) -> dict:
        return dict(self.hub.faults.stats)

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.should_exit = True
            self._thread.join(timeout=15)
        self.hub.close()

    def __enter__(self) -> "EmulatorHandle":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_emulator(data_dir: str | Path, port: int = 0, host: str = "127.0.0.1", **options: Any) -> EmulatorHandle:
    """Start an emulator on `host:port` (0 = any free port) in a background thread.

    Options are those of `EmulatedHub` (boot_delay, require_token, users, faults, supervise_repos,
    stop_grace, app_start_delay, job_schedule_delay, fsync, rules). The Hub's rules are all on
    unless `rules` turns some off (rules.py: `rules={"commit_quota": False}` or `"quota=off"`).
    Raises ValueError for an unknown rule or option value, DataDirBusy for a data dir in use.
    """
    install_log_filter()
    sock = bind_socket(host, port)
    url = f"http://{host}:{sock.getsockname()[1]}"
    try:
        hub = EmulatedHub(data_dir, base_url=url, **options)
    except BaseException:
        sock.close()
        raise
    app = create_app(hub=hub)
    server = uvicorn.Server(uvicorn_config(app, host, sock.getsockname()[1]))
    # uvicorn installs signal handlers only on the main thread; in a thread it must not try.
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="hub-emulator")
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            hub.close()
            raise RuntimeError("the emulator did not start")
        time.sleep(0.005)
    return EmulatorHandle(hub, app, server, thread, url)


def options_to_argv(options: dict[str, Any]) -> list[str]:
    """Turn `start_emulator`-style keyword options into `python -m scheduler.emulator` flags."""
    argv: list[str] = []
    faults = options.pop("faults", None)
    if isinstance(faults, FaultConfig):
        faults = faults.to_dict()
    rules = options.pop("rules", None)
    if rules:
        argv += ["--rules", rules_to_arg(rules)]
    for key, value in {**(faults or {}), **options}.items():
        if value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if key == "users":
            for token, name in value.items():
                argv += ["--user", f"{name}:{token}"]
        elif key == "paths":
            argv += ["--fault-paths", str(value)]
        elif value is True:
            argv.append(flag)
        else:
            argv += [flag, str(value)]
    return argv


def rules_to_arg(rules: "Rules | str | dict") -> str:
    """`rules` as the `--rules` flag's `name=value,...` (a Rules instance: every setting)."""
    if isinstance(rules, str):
        return rules
    items = rules.to_dict() if isinstance(rules, Rules) else dict(rules)
    parts = []
    for key, value in items.items():
        if key == "request_quotas":
            parts += [f"quota.{plan}.{bucket}={n}" for plan, buckets in value.items() for bucket, n in buckets.items()]
        else:
            parts.append(f"{key}={'on' if value is True else 'off' if value is False else value}")
    return ",".join(parts)


class EmulatorProcess:
    """An emulator in a child process: `.url`, `.kill()` (SIGKILL), `.stop()`, `.restart()`."""

    def __init__(self, data_dir: str | Path, port: int | None = None, host: str = "127.0.0.1",
                 log_path: str | Path | None = None, **options: Any):
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port or free_port(host)
        self.url = f"http://{host}:{self.port}"
        self.argv = [sys.executable, "-m", "scheduler.emulator", "--host", host, "--port", str(self.port),
                     "--data", str(self.data_dir), *options_to_argv(dict(options))]
        self.log_path = Path(log_path) if log_path else self.data_dir.with_name(self.data_dir.name + ".emulator.log")
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> "EmulatorProcess":
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_PROJECT_ROOT), env.get("PYTHONPATH")]))
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the emulator exited with {self.proc.returncode}; see {self.log_path}")
            if self.healthy():
                return self
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"the emulator did not become healthy in {timeout}s; see {self.log_path}")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/_emulator/health", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, like a crash. Supervised apps survive it (their own process
        groups, as containers outlive a control plane); the next start stops them."""
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()

    def stop(self, timeout: float = 15) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self, timeout: float = 30) -> "EmulatorProcess":
        self.stop()
        return self.start(timeout)

    def __enter__(self) -> "EmulatorProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def spawn_emulator(data_dir: str | Path, port: int | None = None, **options: Any) -> EmulatorProcess:
    """Start `python -m scheduler.emulator` on `data_dir` and wait until it answers."""
    return EmulatorProcess(data_dir, port, **options).start()


def add_server_arguments(parser) -> None:
    """Flags shared by `python -m scheduler.emulator` and `space-scheduler emulator`."""
    parser.add_argument("--port", type=int, default=7861, help="port to listen on (0 = any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    parser.add_argument("--data", required=True, help="folder holding repos, Spaces, jobs (created if missing)")
    parser.add_argument("--boot-delay", type=float, default=2.0, help="seconds a Space takes to (re)start")
    parser.add_argument("--app-start-delay", type=float, default=None,
                        help="seconds a supervised app stays APP_STARTING (default: boot delay / 4, max 0.5)")
    parser.add_argument("--stop-grace", type=float, default=5.0, help="seconds between SIGTERM and SIGKILL")
    parser.add_argument("--require-token", action="store_true", help="answer 401 without a valid bearer token")
    parser.add_argument("--user", action="append", default=[], metavar="NAME:TOKEN",
                        help="map a token to a user name (repeatable); without it every token is user 'demo'")
    parser.add_argument("--supervise-repos", action="store_true",
                        help="run every Space whose repo has an app file (app.py or README app_file)")
    parser.add_argument("--no-fsync", dest="fsync", action="store_false", help="skip fsync (faster, not crash-safe)")
    parser.add_argument("--rules", default=None, metavar="NAME=VALUE,...",
                        help="turn off or tune the Hub's rules, which are all on by default, e.g. "
                             "'quota=off,overlap=0' or 'commit_limit=12,commit_window_s=400' "
                             "(GET /_emulator/rules lists them)")
    g = parser.add_argument_group("fault injection")
    g.add_argument("--error-rate", type=float, default=0.0, help="fraction of requests answered 500/502/503")
    g.add_argument("--commit-429-every", type=int, default=0, help="answer every Nth commit with 429")
    g.add_argument("--retry-after-s", type=float, default=1.0, help="Retry-After seconds sent with injected 429s")
    g.add_argument("--latency-s", type=float, default=0.0, help="seconds of added latency")
    g.add_argument("--latency-rate", type=float, default=0.0, help="fraction of requests delayed")
    g.add_argument("--drop-after-commit-rate", type=float, default=0.0,
                   help="fraction of commits applied and then answered with a dropped connection")
    g.add_argument("--fault-paths", default=None, help="regex: only matching request paths get faults")
    g.add_argument("--seed", type=int, default=None, help="seed of the fault RNG")


def run_from_args(args) -> int:
    """Serve in the foreground until SIGINT/SIGTERM; children and jobs are stopped on the way out."""
    users = {}
    for item in args.user:
        name, sep, token = item.partition(":")
        if not sep or not name or not token:
            raise ValueError(f"--user expects NAME:TOKEN, got {item.split(':')[0]!r}:...")
        users[token] = name
    faults = FaultConfig.from_dict({
        "error_rate": args.error_rate, "commit_429_every": args.commit_429_every,
        "retry_after_s": args.retry_after_s, "latency_s": args.latency_s, "latency_rate": args.latency_rate,
        "drop_after_commit_rate": args.drop_after_commit_rate, "paths": args.fault_paths, "seed": args.seed,
    })
    rules = Rules().with_changes(args.rules)  # a bad --rules fails here, before the port is taken
    install_log_filter()
    sock = bind_socket(args.host, args.port)
    url = f"http://{args.host}:{sock.getsockname()[1]}"
    hub = EmulatedHub(args.data, base_url=url, boot_delay=args.boot_delay, app_start_delay=args.app_start_delay,
                      stop_grace=args.stop_grace, require_token=args.require_token, users=users, faults=faults,
                      supervise_repos=args.supervise_repos, fsync=args.fsync, rules=rules)
    print(f"Hub emulator on {url} (data: {hub.data_dir})", flush=True)
    server = uvicorn.Server(uvicorn_config(create_app(hub=hub), args.host, sock.getsockname()[1]))
    try:
        server.run(sockets=[sock])
    finally:
        hub.close()
    return 0
