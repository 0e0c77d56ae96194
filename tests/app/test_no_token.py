"""The Hub token the app holds is never rendered on the page nor returned by any endpoint."""

from __future__ import annotations

import json

import httpx

from .conftest import wait_for

# Not shaped like an `hf_` token, so only the app's own redaction can hide it.
TOKEN = "plain-recognisable-token-5f1e9c"


def test_no_page_config_or_endpoint_response_contains_the_token_even_after_a_task_printed_it(start_app):
    running = start_app(worker=True, callback="leaky", token=TOKEN)
    client = running.client()
    responses = [client.predict("demo/m", "demo/d", "t4-small", "{}", 0, 1, 60, api_name="/submit")]
    task_id = responses[0]["task_id"]

    def failed():
        [task] = client.predict("ALL", api_name="/tasks")
        return task if task["status"] == "FAILED" else None

    task = wait_for(failed, 60, "the leaky task to fail", every=0.2)
    assert "denied for token ***" in task["error"]  # the callback did put the token in its error
    # Requeue then cancel below must see PENDING, not a worker that already re-ran the task.
    running.app.worker.stop("token answers checked from here", wait_s=10)
    responses += [client.predict("ALL", api_name="/tasks"), client.predict(api_name="/status"),
                  client.predict(task_id, api_name="/requeue"), client.predict(task_id, "", api_name="/cancel")]
    for path in ("", "config", "gradio_api/info", "gradio_api/openapi.json"):
        page = httpx.get(running.url + path, timeout=30)
        assert page.status_code in (200, 404), path
        responses.append(page.text)
    responses.append(running.app.refresh("ALL", running.app.access.local_user))  # what the page's timer shows
    text = json.dumps(responses, default=str)
    assert task_id in text and TOKEN not in text
