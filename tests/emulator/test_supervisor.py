"""A supervised Space runs its app as a child process and is restarted on hardware changes."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.support import wait_for

APP = """
import os, signal, sys, time
out = os.environ["OUT_FILE"]
with open(out, "a") as f:
    f.write(f"{os.environ['SPACE_HARDWARE']} {os.environ['SPACE_ID']} {os.environ['SYSTEM']} "
            f"{os.environ.get('MY_SECRET')} {os.environ.get('MY_VAR')} {os.environ['HF_ENDPOINT']}\\n")
print("app started on", os.environ["SPACE_HARDWARE"], flush=True)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
while True:
    time.sleep(0.05)
"""


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_supervised_child_is_restarted_with_the_new_hardware(hf_api, emulator, tmp_path):
    space = "demo/worker"
    out = tmp_path / "hardware.txt"
    (tmp_path / "app.py").write_text(APP)
    hf_api.create_repo(space, repo_type="space", space_sdk="docker")
    hf_api.add_space_secret(space, "MY_SECRET", "shh")
    hf_api.add_space_variable(space, "MY_VAR", "visible")
    r = httpx.post(f"{emulator.url}/_emulator/spaces/{space}/supervise",
                   json={"command": ["python", "app.py"], "cwd": str(tmp_path), "env": {"OUT_FILE": str(out)}})
    assert r.status_code == 200
    wait_for(lambda: hf_api.get_space_runtime(space).stage == "RUNNING" and len(lines(out)) == 1)
    assert lines(out)[0] == f"cpu-basic {space} spaces shh visible {emulator.url}"

    hf_api.request_space_hardware(space, "t4-small")
    wait_for(lambda: len(lines(out)) == 2 and hf_api.get_space_runtime(space).stage == "RUNNING")
    assert lines(out)[1].startswith("t4-small ")
    assert "APP_STARTING" in [e["stage"] for e in emulator.billing(space)["timeline"]]
    logs = list(hf_api.fetch_space_logs(space))
    assert any("app started on t4-small" in line for line in logs)

    hf_api.pause_space(space)
    wait_for(lambda: emulator.hub.spaces.supervisor.pid(space) is None)
    hf_api.restart_space(space)
    wait_for(lambda: len(lines(out)) == 3 and hf_api.get_space_runtime(space).stage == "RUNNING")


def test_child_that_exits_with_an_error_puts_the_space_in_runtime_error(hf_api, emulator, tmp_path):
    space = "demo/crashy"
    hf_api.create_repo(space, repo_type="space", space_sdk="docker")
    httpx.post(f"{emulator.url}/_emulator/spaces/{space}/supervise",
               json={"command": ["python", "-c", "import time; time.sleep(0.3); raise SystemExit(3)"],
                     "cwd": str(tmp_path)})
    wait_for(lambda: hf_api.get_space_runtime(space).stage == "RUNTIME_ERROR")
    assert "Exit code: 3" in hf_api.get_space_runtime(space).raw["errorMessage"]


def test_repo_files_are_checked_out_and_app_py_runs_like_a_deployed_space(hf_api, emulator, tmp_path):
    space = "demo/deployed"
    out = tmp_path / "deployed.txt"
    hf_api.create_repo(space, repo_type="space", space_sdk="gradio")
    hf_api.upload_file(path_or_fileobj=APP.encode(), path_in_repo="app.py", repo_id=space, repo_type="space")
    httpx.post(f"{emulator.url}/_emulator/spaces/{space}/supervise", json={"env": {"OUT_FILE": str(out)}})
    wait_for(lambda: len(lines(out)) == 1 and hf_api.get_space_runtime(space).stage == "RUNNING")
    checkout = emulator.data_dir / "spaces-checkout" / "demo--deployed" / "app.py"
    assert checkout.read_text() == APP
    # A new push rebuilds and restarts the app, as on the Hub.
    hf_api.upload_file(path_or_fileobj=b"# v2\n" + APP.encode(), path_in_repo="app.py", repo_id=space,
                       repo_type="space")
    wait_for(lambda: len(lines(out)) == 2 and checkout.read_text().startswith("# v2"))
    emulator.stop()
    assert emulator.hub.spaces.supervisor.pid(space) is None
