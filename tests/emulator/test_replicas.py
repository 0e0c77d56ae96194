"""Replicas: restarts on secret and variable changes, the overlap of a hardware switch, the machine a
replica runs on (its nvidia-smi), the Space's port following the current replica, and billing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import pytest

from tests.emulator.test_spaces import wait_stage
from tests.support import free_port, wait_for

# A Space app that records each start (its flavor, pid and what its nvidia-smi says) and each SIGTERM.
APP = r"""
import json, os, signal, subprocess, sys, time
out = os.environ["OUT_FILE"]
def note(**event):
    with open(out, "a") as f:
        f.write(json.dumps({"pid": os.getpid(), "hardware": os.environ["SPACE_HARDWARE"], **event}) + "\n")
smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
                     capture_output=True, text=True)
note(event="start", smi_code=smi.returncode, smi=smi.stdout.strip(), secret=os.environ.get("MY_SECRET"))
def stop(*_):
    note(event="sigterm")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
port = os.environ.get("PORT")
if port:
    from http.server import BaseHTTPRequestHandler, HTTPServer
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = os.environ["SPACE_HARDWARE"].encode()
            self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
            self.wfile.write(body)
        def log_message(self, *a):
            pass
    HTTPServer(("127.0.0.1", int(port)), Handler).serve_forever()
while True:
    time.sleep(0.05)
"""


def events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def starts(path: Path) -> list[dict]:
    return [e for e in events(path) if e["event"] == "start"]


@pytest.fixture
def app(hf_api, emulator, tmp_path):
    """A supervised Space running APP; returns (space id, its events file)."""
    space, out = "demo/app", tmp_path / "events.jsonl"
    (tmp_path / "app.py").write_text(APP)
    hf_api.create_repo(space, repo_type="space", space_sdk="gradio")

    def supervise(**extra):
        r = httpx.post(f"{emulator.url}/_emulator/spaces/{space}/supervise",
                       json={"command": ["python", "app.py"], "cwd": str(tmp_path), "env": {"OUT_FILE": str(out)},
                             **extra})
        r.raise_for_status()
        wait_for(lambda: len(starts(out)) >= 1 and hf_api.get_space_runtime(space).stage == "RUNNING", 20,
                 "the app to run")

    return space, out, supervise


@pytest.mark.parametrize("change", ["secret", "variable", "delete secret"])
def test_a_secret_or_variable_change_restarts_the_app(hf_api, emulator, app, change):
    space, out, supervise = app
    hf_api.add_space_secret(space, "MY_SECRET", "v1")
    supervise()
    first = starts(out)[-1]
    # The first secret restarted the Space only if its build had finished by then: count from here.
    before = httpx.get(f"{emulator.url}/_emulator/spaces/{space}").json()["restarts"].get("config", 0)
    if change == "secret":
        hf_api.add_space_secret(space, "MY_SECRET", "v2")
    elif change == "variable":
        hf_api.add_space_variable(space, "MODE", "x")
    else:
        hf_api.delete_space_secret(space, "MY_SECRET")
    assert hf_api.get_space_runtime(space).stage == "APP_STARTING"
    wait_for(lambda: len(starts(out)) == 2 and hf_api.get_space_runtime(space).stage == "RUNNING", 20,
             "the app to restart")
    assert {"pid": first["pid"], "hardware": "cpu-basic", "event": "sigterm"} in events(out)
    expected = {"secret": "v2", "variable": "v1", "delete secret": None}[change]
    assert starts(out)[-1]["secret"] == expected
    info = httpx.get(f"{emulator.url}/_emulator/spaces/{space}").json()
    assert info["restarts"]["config"] == before + 1


def test_with_restart_on_config_off_a_secret_change_leaves_the_app_running(hf_api, emulator, app):
    space, out, supervise = app
    supervise()
    emulator.set_rules(restart_on_config=False)
    hf_api.add_space_secret(space, "MY_SECRET", "v2")
    assert hf_api.get_space_runtime(space).stage == "RUNNING"
    assert len(starts(out)) == 1 and "config" not in emulator.billing(space)["restarts"]


def test_after_a_switch_the_old_replica_runs_on_for_the_overlap_and_both_are_billed(hf_api, emulator, app):
    space, out, supervise = app
    emulator.set_rules(replica_overlap_s=1.5)
    supervise()
    cpu = starts(out)[0]
    assert cpu["smi_code"] == 9 and cpu["smi"].startswith("NVIDIA-SMI has failed")  # no GPU on cpu-basic
    hf_api.request_space_hardware(space, "t4-small")
    assert hf_api.get_space_runtime(space).stage == "RUNNING_BUILDING"  # the old replica serves meanwhile
    wait_for(lambda: len(starts(out)) == 2, 20, "the t4 replica to start")
    gpu = starts(out)[1]
    assert gpu["hardware"] == "t4-small" and gpu["smi"] == "Tesla T4, 15360"
    runtime = hf_api.get_space_runtime(space)
    assert runtime.hardware == "t4-small"
    old_still_running = [e for e in events(out) if e["pid"] == cpu["pid"] and e["event"] == "sigterm"] == []
    assert old_still_running, "the cpu-basic replica was stopped before the overlap ended"
    wait_for(lambda: any(e["pid"] == cpu["pid"] and e["event"] == "sigterm" for e in events(out)), 10,
             "the old replica to be stopped after the overlap")
    wait_stage(hf_api, space, "RUNNING")
    hf_api.pause_space(space)
    bill = emulator.billing(space)
    [t4] = bill["periods"]  # cpu-basic periods cost nothing and are not listed
    assert t4["flavor"] == "t4-small" and t4["billed_minutes"] == 1 and bill["boots"] == 2
    assert bill["restarts"] == {"hardware": 1}


def test_with_no_overlap_the_old_replica_is_gone_before_the_new_one_starts(hf_api, emulator, app):
    space, out, supervise = app
    emulator.set_rules(replica_overlap_s=0)
    supervise()
    hf_api.request_space_hardware(space, "a10g-small")
    wait_for(lambda: len(starts(out)) == 2, 20, "the a10g replica to start")
    log = events(out)
    assert [e["event"] for e in log] == ["start", "sigterm", "start"]
    assert log[2]["smi"] == "NVIDIA A10G, 23028"


def test_the_spaces_port_reaches_the_current_replica(hf_api, emulator, app):
    space, out, supervise = app
    port = free_port()
    supervise(port=port)
    wait_for(lambda: _get(port) == "cpu-basic", 20, "the app to answer on the Space's port")
    hf_api.request_space_hardware(space, "t4-small")
    wait_for(lambda: _get(port) == "t4-small", 30, "the Space's port to reach the t4 replica")
    assert hf_api.space_info(space).host == f"http://127.0.0.1:{port}"


def _get(port: int) -> str | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/", timeout=2).text
    except httpx.HTTPError:
        return None


@pytest.mark.parametrize("flavor, listed", [
    ("l4x4", ["NVIDIA L4, 23034"] * 4),
    ("a100-large", ["NVIDIA A100-SXM4-80GB, 81920"]),
    ("h200", ["NVIDIA H200, 143771"]),
    ("cpu-upgrade", None),
])
def test_a_job_sees_the_gpus_of_its_flavor(hf_api, flavor, listed):
    script = ("import subprocess; r = subprocess.run(['nvidia-smi', '--query-gpu=name,memory.total', "
              "'--format=csv,noheader,nounits'], capture_output=True, text=True); "
              "print('CODE', r.returncode); print(r.stdout)")
    job = hf_api.run_job(image="python:3.12", command=["python", "-c", script], flavor=flavor, namespace="demo")
    wait_for(lambda: hf_api.inspect_job(job_id=job.id, namespace="demo").status.stage == "COMPLETED", 20, "the job")
    logs = list(hf_api.fetch_job_logs(job_id=job.id, namespace="demo"))
    if listed is None:
        assert "CODE 9" in logs
    else:
        assert "CODE 0" in logs and [line for line in logs if line.startswith("NVIDIA")] == listed


def test_nvidia_smi_lists_gpus_and_answers_queries_like_the_real_one(emulator):
    from scheduler.emulator.machine import bin_dir
    import subprocess

    smi = str(bin_dir(emulator.data_dir, "a10g-largex2") / "nvidia-smi")
    listed = subprocess.run([smi, "-L"], capture_output=True, text=True).stdout.splitlines()
    assert len(listed) == 2 and listed[1].startswith("GPU 1: NVIDIA A10G (UUID: GPU-")
    with_units = subprocess.run([smi, "--query-gpu=index,name,memory.total", "--format=csv"],
                                capture_output=True, text=True).stdout.splitlines()
    assert with_units == ["index, name, memory.total [MiB]", "0, NVIDIA A10G, 23028 MiB", "1, NVIDIA A10G, 23028 MiB"]
    bad = subprocess.run([smi, "--query-gpu=colour", "--format=csv"], capture_output=True, text=True)
    assert bad.returncode == 2 and 'Field "colour" is not a valid field to query.' in bad.stdout
    zero = subprocess.run([str(bin_dir(emulator.data_dir, "zero-a10g") / "nvidia-smi"), "-L"],
                          capture_output=True, text=True)
    assert zero.returncode == 9  # ZeroGPU gives a training process no GPU
    assert sys.executable in (Path(smi).read_text().splitlines()[0])


def test_billing_is_per_started_minute_for_spaces_and_jobs(hf_api, emulator):
    emulator.set_rules(replica_overlap_s=0)  # the overlap's own billing is tested above
    hf_api.create_repo("demo/gpu", repo_type="space", space_sdk="gradio", space_hardware="t4-small")
    wait_stage(hf_api, "demo/gpu", "RUNNING")
    emulator.advance_clock(61)
    hf_api.request_space_hardware("demo/gpu", "cpu-basic")
    wait_stage(hf_api, "demo/gpu", "RUNNING")
    bill = emulator.billing("demo/gpu")
    [period] = bill["periods"]
    assert period["billed_minutes"] == 2 and period["usd"] == pytest.approx(2 * 0.40 / 60, abs=1e-6)
    assert period["start"] < period["end"] and bill["totals"]["usd"] == period["usd"]
    assert bill["billed_seconds"]["t4-small"] == pytest.approx(period["seconds"])  # the per-second figure stays
    job = hf_api.run_job(image="x", command=["python", "-c", "1"], flavor="a10g-small", namespace="demo")
    wait_for(lambda: hf_api.inspect_job(job_id=job.id, namespace="demo").status.stage == "COMPLETED", 20, "the job")
    everything = httpx.get(f"{emulator.url}/_emulator/billing").json()
    [job_period] = everything["jobs"]["periods"]
    assert job_period["id"] == job.id and job_period["flavor"] == "a10g-small" and job_period["billed_minutes"] == 1
    assert everything["totals"]["usd"] == pytest.approx(period["usd"] + job_period["usd"], abs=1e-6)


def test_jobs_accept_every_job_flavor_and_refuse_zero_gpu(hf_api):
    from huggingface_hub.errors import HfHubHTTPError

    assert hf_api.run_job(image="x", command=["python", "-c", "1"], flavor="h200x2", namespace="demo").flavor == "h200x2"
    with pytest.raises(HfHubHTTPError) as excinfo:
        hf_api.run_job(image="x", command=["python", "-c", "1"], flavor="zero-a10g", namespace="demo")
    assert excinfo.value.response.status_code == 400
