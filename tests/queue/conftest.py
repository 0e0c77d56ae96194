"""Queues over every store: the contract suite runs the same tests against each (the huey pattern)."""

from __future__ import annotations

import itertools

import pytest

TOKEN = "hf_queuetesttoken0123456789"
_names = itertools.count()


@pytest.fixture(scope="module")
def hub_emulator(tmp_path_factory):
    from scheduler.emulator.server import start_emulator

    with start_emulator(tmp_path_factory.mktemp("hub"), boot_delay=0.1) as handle:
        yield handle


def make_hub_queue_url(emulator) -> str:
    """A fresh private dataset with an empty queue in it."""
    from scheduler.queue import TaskQueue

    url = f"hf://datasets/demo/queue-{next(_names)}"
    TaskQueue.open(url, token=TOKEN, endpoint=emulator.url).init()
    return url


@pytest.fixture(params=["memory", "file", "hub"])
def open_queue(request, tmp_path):
    """A factory: each call opens the SAME queue again (as another client would), over the param's store."""
    from scheduler.queue import TaskQueue
    from scheduler.stores import MemoryStore

    kind = request.param
    if kind == "memory":
        store = MemoryStore()
        yield lambda **kw: TaskQueue(store, **kw)
    elif kind == "file":
        yield lambda **kw: TaskQueue.open(str(tmp_path / "queue"), **kw)
    else:
        emulator = request.getfixturevalue("hub_emulator")
        url = make_hub_queue_url(emulator)
        yield lambda **kw: TaskQueue.open(url, token=TOKEN, endpoint=emulator.url, **kw)
