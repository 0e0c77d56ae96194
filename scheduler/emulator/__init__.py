"""An offline Hugging Face Hub on loopback, spoken to by the real `huggingface_hub` client, that lives
by the real Hub's rules (hub-facts §11).

    from scheduler.emulator import start_emulator
    with start_emulator(tmp_dir, boot_delay=0.2) as hub:          # uvicorn in a thread
        api = HfApi(endpoint=hub.url, token="hf_anything")         # every token is user "demo"

    proc = spawn_emulator(tmp_dir, port=None, boot_delay=0.2)       # `python -m scheduler.emulator`
    proc.kill(); proc.restart()                                     # SIGKILL, then same port and data

Options (both functions, and `create_app`): boot_delay, app_start_delay, stop_grace,
require_token, users ({token: name}), faults (FaultConfig or dict), supervise_repos,
job_schedule_delay, fsync, rules.

The Hub's rules are all on by default; `rules` switches parts off or tunes them, as a dict or a
string (`rules="quota=off,overlap=0"`, `--rules` on the command line, `POST /_emulator/rules` at
run time; the table is in rules.py):

- commit quota: 128 commits per hour per repo, the Hub's 429 text and `Retry-After` (quotas.py);
- request quotas per account and 5-minute window in the api / resolvers / pages buckets, with
  `RateLimit` and `RateLimit-Policy` on every answer (quotas.py);
- plans and payment: Gradio/Docker Spaces need PRO (Team/Enterprise for an org) except 2 ZeroGPU
  Spaces of a free user, paid hardware a payment method, Jobs credits (accounts.py);
- sleep: no sleep time on cpu-basic; a Space with no visit sleeps (cpu-basic after 48 h, upgraded
  hardware after its sleep time), wakes on a visit of its page or a restart (spaces.py);
- restarts on any secret or variable change; the old replica running on for a few seconds after a
  hardware switch while the runtime already says the new hardware (spaces.py);
- each replica and Job on a machine with its flavor's `nvidia-smi` (machine.py);
- billing per started minute of each paid period (billing.py);
- hardware lists like the Hub's (hardware.py); webhooks at most 1,000 triggers a day each.

Accounts: `demo` (any unlisted token; PRO, payment method, $100 of Jobs credits) and `hobbyist`
(token `hf_hobbyisttoken0123456789`; free, no payment method, no credits); see accounts.py.
Time: the emulator clock (clock.py) gives every `Date` header, commit time, quota window and
sleep deadline; tests move it forward instead of waiting.

Control routes (never faulted, never counted in quotas, no token needed):

- `GET /_emulator/health`, `GET /_emulator/config` (options, faults, rules, clock offset),
  `GET /_emulator/stats` (commits, commit_412, commit_quota_429, request_quota_429, requests,
  fault_error[_5xx], fault_429, fault_latency, fault_dropped_after_commit).
- `GET|POST /_emulator/faults`: read or change fault injection (`{"reset": true}` starts from
  defaults); see `faults.FaultConfig`.
- `GET|POST /_emulator/rules`: read or change the rules (`{"reset": true}`: all on, defaults).
- `GET /_emulator/clock`, `POST /_emulator/clock {"advance_s": N}`: read or move the clock.
- `GET /_emulator/users`, `POST /_emulator/users/{name}` `{"plan", "canPay", "credits", "type",
  "members", "token"}`: the accounts.
- `GET /_emulator/quotas`: each account's requests per bucket in the current window, and the
  commits counted per repo.
- `GET /_emulator/billing`: every paid period of Space replicas and Jobs, with totals.
- `GET /_emulator/spaces/{ns}/{name}`: runtime, boots, restarts per reason, running replicas,
  last activity and when the Space would sleep.
- `GET /_emulator/spaces/{ns}/{name}/billing`: `{space, now, timeline: [{t, time, hardware,
  requested, stage}], periods: [{kind, id, flavor, start, end, running, seconds, billed_minutes,
  usd}], totals: {periods, seconds, billed_minutes, usd}, billed_minutes, billed_usd,
  billed_seconds, cost_usd, total_cost_usd (the per-second figures), boots, restarts,
  hardware_changes, hardware_requests, current, requested, stage}`.
- `POST /_emulator/spaces/{ns}/{name}/visit`: a visitor (as `GET /spaces/{ns}/{name}`, the page).
- `POST /_emulator/spaces/{ns}/{name}/supervise` `{"command"?: [...], "cwd"?: str, "env"?: {...},
  "port"?: int}` runs the Space's app as a child process per replica (the port is forwarded to the
  current replica); `DELETE` stops supervising.
- `GET /_emulator/webhooks/deliveries`: what was sent (or dropped past the trigger limit).

Not modelled: pull requests, LFS/Xet uploads, tags, scheduled jobs, ZeroGPU's `@spaces.GPU`.
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
