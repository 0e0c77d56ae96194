"""space-scheduler: an on-demand GPU job scheduler for Hugging Face Spaces."""

from __future__ import annotations

from typing import Any

__version__ = "0.2.0"


def open_queue(url: str, *, space: str | None = None, token: str | None = None, endpoint: str | None = None,
               **options: Any):
    """A `TaskQueue` for `url` that, when it knows its Space (`space`, else $SCHEDULER_SPACE), asks that
    Space for a new task's hardware right after each add (see `scheduler.wake`)."""
    from .queue import TaskQueue
    from .wake import waker_for

    queue = TaskQueue.open(url, token=token, endpoint=endpoint, **options)
    waker = waker_for(space, token=token, endpoint=endpoint)
    if waker is not None:
        queue.on_added.append(waker.wake)
    return queue
