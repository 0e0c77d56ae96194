"""The library's error types: each carries the context a user needs to fix the problem."""

from __future__ import annotations


class SchedulerError(Exception):
    """Base of every error the CLI prints as one line instead of a traceback."""


class UserError(SchedulerError, ValueError):
    """Bad input from a person (CLI flag, form field, file)."""


class ValidationError(UserError):
    """A task field is invalid; `field` names it."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class CSVFormatError(UserError):
    """The queue file does not parse; `line` and `column` are 1-based positions in the file."""

    def __init__(self, message: str, line: int, column: int | None = None, field: str | None = None):
        self.line = line
        self.column = column
        self.field = field
        self.reason = message
        where = f"line {line}"
        if column is not None:
            where += f", column {column}"
        if field:
            where += f" ({field})"
        super().__init__(f"tasks.csv {where}: {message}")


class InvalidTransition(SchedulerError):
    def __init__(self, task_id: str, current: str, target: str):
        self.task_id = task_id
        self.current = current
        self.target = target
        super().__init__(f"task {task_id}: cannot go from {current} to {target}")


class TaskNotFound(SchedulerError, KeyError):
    def __init__(self, task_id: str):
        self.task_id = task_id
        super().__init__(f"no task with id {task_id!r}")

    def __str__(self) -> str:  # KeyError would quote the whole message
        return self.args[0]


class LeaseLost(SchedulerError):
    """The worker no longer owns the task (lease expired and someone else took it, or it was cancelled)."""

    def __init__(self, task_id: str, reason: str):
        self.task_id = task_id
        super().__init__(f"task {task_id}: lease lost: {reason}")


class Conflict(SchedulerError):
    """A compare-and-swap write lost: the stored version moved since it was read."""


class AmbiguousWrite(Conflict):
    """The write may or may not have been applied (lost response); re-read before re-applying."""


class StoreError(SchedulerError):
    """The store could not be read or written (after retries)."""


class Unavailable(StoreError):
    """The store answered 429/5xx or not at all; nothing was changed. Try again after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float | None = None):
        self.retry_after = retry_after
        super().__init__(message)


class CommitQuotaExceeded(Unavailable):
    """The repository's commit quota is spent (the Hub allows 128 commits per hour per repository,
    hub-facts §11); nothing was written. Writing resumes after `retry_after` seconds, which can be
    close to an hour: callers wait it out rather than give up, since every writer shares the quota."""


class NonRetryable(SchedulerError):
    """A task failure that would happen again on every attempt (a model or dataset that does not
    exist, no access, a bad parameter, out of memory on this flavor). Raised by a callback (or a
    recipe), it fails the task at once, without spending its remaining attempts on paid hardware.
    `hint` says what to change (a smaller batch, a bigger flavor, the parameter to fix)."""

    def __init__(self, message: str, hint: str = ""):
        self.reason = message
        self.hint = hint
        super().__init__(f"{message} ({hint})" if hint else message)
