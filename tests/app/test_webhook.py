"""The app serves the Hub webhook that wakes its worker on any commit to the queue."""

from __future__ import annotations

import httpx

from tests.deploy.test_wake import payload


def test_the_apps_webhook_refuses_callers_without_the_secret_and_wakes_the_worker_with_it(start_app):
    running = start_app(worker=True, webhook_secret="s3cret")
    url = running.url + "webhooks/queue"
    assert httpx.post(url, json=payload()).status_code == 401
    assert httpx.post(url, json=payload(), headers={"x-webhook-secret": "nope"}).status_code == 403
    answer = httpx.post(url, json=payload("c" * 40), headers={"x-webhook-secret": "s3cret"})
    assert answer.status_code == 200 and answer.json() == {"woken": "c" * 40}


def test_without_a_secret_there_is_no_webhook_endpoint(start_app):
    running = start_app(worker=True)
    assert httpx.post(running.url + "webhooks/queue", json=payload()).status_code in (404, 405)
