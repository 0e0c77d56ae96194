"""Jobs routes: hardware, run, list, inspect, cancel and logs."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from .. import hardware
from ..hub import EmulatedHub
from ..jobs import JobNotFound
from .common import Access, HTTPError, json_body, sse_response


def build_router(hub: EmulatedHub) -> APIRouter:
    router = APIRouter()
    access = Access(hub)
    jobs = hub.jobs

    @router.get("/api/jobs/hardware")
    def _jobs_hardware():
        return hardware.hardware_list(jobs=True)

    def job_or_404(ns: str, job_id: str) -> dict:
        try:
            return jobs.get(ns, job_id)
        except JobNotFound:
            raise HTTPError(404, f"Job {job_id} not found") from None

    @router.post("/api/jobs/{ns}")
    async def _run_job(request: Request, ns: str):
        body = await json_body(request)
        access.job_ns(request, ns)
        if body.get("flavor") and body["flavor"] not in hardware.JOB_FLAVORS:
            raise HTTPError(400, f"Invalid flavor {body['flavor']!r}; Job flavors: {', '.join(hardware.JOB_FLAVORS)}")
        if hub.rules.current.plans:
            hub.accounts.check_jobs(ns)
        try:
            return await run_in_threadpool(jobs.create, ns, body, request.state.user)
        except ValueError as exc:
            raise HTTPError(400, str(exc)) from None

    @router.get("/api/jobs/{ns}")
    def _list_jobs(request: Request, ns: str):
        access.job_ns(request, ns)
        return jobs.list(ns, request.query_params.getlist("stage"), request.query_params.getlist("label"))

    @router.get("/api/jobs/{ns}/{job_id}")
    def _inspect_job(request: Request, ns: str, job_id: str):
        access.job_ns(request, ns)
        return jobs.public(job_or_404(ns, job_id))

    @router.post("/api/jobs/{ns}/{job_id}/cancel")
    async def _cancel_job(request: Request, ns: str, job_id: str):
        access.job_ns(request, ns)
        job_or_404(ns, job_id)
        return await run_in_threadpool(jobs.cancel, ns, job_id)

    @router.get("/api/jobs/{ns}/{job_id}/logs")
    def _job_logs(request: Request, ns: str, job_id: str):
        access.job_ns(request, ns)
        job_or_404(ns, job_id)
        tail = request.query_params.get("tail")
        return sse_response(jobs.log_events(job_id, int(tail) if tail else None))

    return router
