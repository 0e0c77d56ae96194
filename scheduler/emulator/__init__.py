"""An offline Hugging Face Hub on loopback, spoken to by the real `huggingface_hub` client.

    from scheduler.emulator import start_emulator
    with start_emulator(tmp_dir, boot_delay=0.2) as hub:          # uvicorn in a thread
        api = HfApi(endpoint=hub.url, token="hf_anything")         # every token is user "demo"

    proc = spawn_emulator(tmp_dir, port=None, boot_delay=0.2)       # `python -m scheduler.emulator`
    proc.kill(); proc.restart()                                     # SIGKILL, then same port and data

Options (both functions, and `create_app`): boot_delay, app_start_delay, stop_grace,
require_token, users ({token: name}), faults (FaultConfig or dict), supervise_repos,
job_schedule_delay, fsync.

Control routes (never faulted, no token needed):

- `GET /_emulator/health`, `GET /_emulator/config`, `GET /_emulator/stats` (commits,
  commit_412, requests, fault_error[_5xx], fault_429, fault_latency, fault_dropped_after_commit).
- `GET|POST /_emulator/faults`: read or change fault injection (`{"reset": true}` starts from
  defaults); see `faults.FaultConfig`.
- `GET /_emulator/spaces/{ns}/{name}/billing`: `{space, now, timeline: [{t, time, hardware,
  requested, stage}], billed_seconds: {flavor: s}, cost_usd: {flavor: usd}, total_cost_usd,
  hardware_changes, hardware_requests, current, requested, stage}`.
- `POST /_emulator/spaces/{ns}/{name}/supervise` `{"command"?: [...], "cwd"?: str, "env"?: {...},
  "port"?: int}` runs the Space's app as a child process; `DELETE` stops supervising.

Not modelled: Spaces going to sleep after `gcTimeout`, pull requests, LFS/Xet uploads, tags,
scheduled jobs.
"""

from .app import create_app
from .faults import FaultConfig
from .hub import DataDirBusy, EmulatedHub
from .server import EmulatorHandle, EmulatorProcess, spawn_emulator, start_emulator

__all__ = [
    "create_app",
    "start_emulator",
    "spawn_emulator",
    "EmulatorHandle",
    "EmulatorProcess",
    "EmulatedHub",
    "FaultConfig",
    "DataDirBusy",
]
