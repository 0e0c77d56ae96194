"""The emulated Hub's state: one data dir, its repo store, Spaces, Jobs, faults, accounts, the rules
it enforces and its clock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from .accounts import DEFAULT_USER, Accounts
from .clock import Clock
from .faults import FaultConfig, FaultInjector
from .jobs import JobRunner
from .quotas import CommitQuota, RequestQuotas
from .rules import RuleBook, Rules
from .spaces import SpaceManager
from .storage import RepoStore
from .webhooks import WebhookManager

__all__ = ["EmulatedHub", "DataDirBusy", "DEFAULT_USER"]


class DataDirBusy(RuntimeError):
    """Another emulator process already serves this data dir."""


class EmulatedHub:
    """Everything one emulator process owns. Holds an exclusive lock on its data dir."""

    def __init__(
        self,
        data_dir: str | Path,
        *,
        boot_delay: float = 2.0,
        app_start_delay: float | None = None,
        stop_grace: float = 5.0,
        require_token: bool = False,
        users: dict[str, str] | None = None,
        faults: FaultConfig | dict | None = None,
        base_url: str = "",
        supervise_repos: bool = False,
        job_schedule_delay: float = 0.1,
        fsync: bool = True,
        rules: Rules | str | dict | None = None,
    ):
        self.rules = RuleBook(rules)  # before taking the data dir: a bad rule leaves nothing locked
        self.data_dir = Path(data_dir).resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Not thread-local: the lock is taken by the starting thread and released by the server thread.
        self._dir_lock = FileLock(str(self.data_dir / ".emulator.lock"), thread_local=False)
        try:
            self._dir_lock.acquire(timeout=0)
        except Timeout:
            raise DataDirBusy(
                f"another emulator is already running on {self.data_dir}; stop it or use another --data folder"
            ) from None
        self.boot_delay = float(boot_delay)
        self.app_start_delay = float(app_start_delay if app_start_delay is not None else min(0.5, boot_delay / 4))
        self.stop_grace = float(stop_grace)
        self.require_token = bool(require_token)
        self.users = dict(users or {})
        self.base_url = base_url.rstrip("/")
        self.supervise_repos = supervise_repos
        self.job_schedule_delay = job_schedule_delay
        if isinstance(faults, dict):
            faults = FaultConfig.from_dict(faults)
        self.faults = FaultInjector(faults)
        self.clock = Clock(self.data_dir, fsync=fsync)
        self.accounts = Accounts(self.data_dir, users=self.users, require_token=self.require_token, fsync=fsync)
        self.commit_quota = CommitQuota(self)
        self.quotas = RequestQuotas(self)
        self.store = RepoStore(self.data_dir, fsync=fsync, clock=self.clock.now)
        self.spaces = SpaceManager(self)
        self.jobs = JobRunner(self)
        self.webhooks = WebhookManager(self.data_dir, fsync=fsync, hub=self)
        self._closed = False

    def start(self) -> None:
        """Resume what was in flight when the previous process stopped (boots, supervised apps)
        and start checking Spaces for sleep."""
        self.spaces.start()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.spaces.close()
            self.jobs.close()
            self.webhooks.close()
        finally:
            self._dir_lock.release()

    def user_for(self, authorization: str | None) -> tuple[str | None, bool]:
        """(username or None for anonymous, token_ok). Never logs or stores the token."""
        return self.accounts.user_for(authorization)

    def summary(self) -> dict[str, Any]:
        """What `/_emulator/config` shows: delays, users, faults, the rules in force and the clock."""
        return {
            "data_dir": str(self.data_dir),
            "boot_delay": self.boot_delay,
            "require_token": self.require_token,
            "users": [a.name for a in self.accounts.all() if a.type == "user"],
            "faults": self.faults.config.to_dict(),
            "rules": self.rules.current.to_dict(),
            "clock_offset_s": self.clock.offset_s,
        }
