"""Hub Jobs run as local subprocesses, driven by the real client."""

from __future__ import annotations

import time

import pytest
from huggingface_hub.errors import HfHubHTTPError


def wait_job(api, job_id, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        job = api.inspect_job(job_id=job_id, namespace="demo")
        if job.status.stage in ("COMPLETED", "ERROR", "CANCELED"):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job stayed {job.status.stage}")
        time.sleep(0.05)


def test_run_job_inspect_and_fetch_logs(hf_api):
    code = "import os; print('hello', os.environ['GREETING'], os.environ['TOKEN'] == 'tok')"
    job = hf_api.run_job(image="python:3.12", command=["python", "-c", code], env={"GREETING": "world"},
                         secrets={"TOKEN": "tok"}, flavor="t4-small", namespace="demo")
    assert job.status.stage in ("SCHEDULING", "RUNNING") and job.owner.name == "demo"
    assert job.url == f"{hf_api.endpoint}/jobs/demo/{job.id}"
    done = wait_job(hf_api, job.id)
    assert done.status.stage == "COMPLETED" and done.flavor == "t4-small"
    assert done.started_at and done.finished_at and done.durations.total_secs is not None
    assert "tok" not in str(done.secrets)
    logs = list(hf_api.fetch_job_logs(job_id=job.id, namespace="demo"))
    assert "hello world True" in logs
    assert [j.id for j in hf_api.list_jobs(namespace="demo")] == [job.id]


def test_failing_job_is_error_and_timeout_is_enforced(hf_api):
    failed = hf_api.run_job(image="x", command=["python", "-c", "raise SystemExit(4)"], namespace="demo")
    job = wait_job(hf_api, failed.id)
    assert job.status.stage == "ERROR" and "4" in job.status.message
    slow = hf_api.run_job(image="x", command=["python", "-c", "import time; time.sleep(30)"], timeout=1,
                          namespace="demo")
    job = wait_job(hf_api, slow.id)
    assert job.status.stage == "ERROR" and "timed out" in job.status.message


def test_cancel_job_stops_the_process(hf_api):
    job = hf_api.run_job(image="x", command=["python", "-c", "import time; print('go', flush=True); time.sleep(30)"],
                         namespace="demo")
    deadline = time.monotonic() + 5
    while hf_api.inspect_job(job_id=job.id, namespace="demo").status.stage != "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    hf_api.cancel_job(job_id=job.id, namespace="demo")
    assert wait_job(hf_api, job.id).status.stage == "CANCELED"


def test_unknown_job_and_jobs_hardware(hf_api):
    with pytest.raises(HfHubHTTPError) as excinfo:
        hf_api.inspect_job(job_id="000000000000000000000000", namespace="demo")
    assert excinfo.value.response.status_code == 404
    hardware = {h.name: h for h in hf_api.list_jobs_hardware()}
    assert hardware["cpu-basic"].unit_cost_usd > 0 and "h200" in hardware
