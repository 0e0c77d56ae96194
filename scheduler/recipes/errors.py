"""Failures of the fine-tuning recipe that would happen again on every attempt.

All of them are `scheduler.errors.NonRetryable`: the worker fails the task at once instead of
spending its remaining attempts (and paid GPU minutes) on the same outcome. Each message names the
parameter or the column to change; `hint` says how.
"""

from __future__ import annotations

from ..errors import NonRetryable


class ParamError(NonRetryable, ValueError):
    """A task parameter is unknown, malformed or impossible on this hardware (`params.NAME` in the message)."""


class DatasetError(NonRetryable, ValueError):
    """The dataset does not fit the task: the message names the column and the param to change."""


class ModelError(NonRetryable, ValueError):
    """The model cannot be fine-tuned as asked (it does not exist, is not accessible, or its
    architecture cannot do the task)."""


class OutOfMemory(NonRetryable, MemoryError):
    """The run does not fit in the device's memory; the hint lists what would make it fit."""


class Diverged(NonRetryable, ArithmeticError):
    """The loss became NaN or infinite: nothing is pushed (NaN weights are worse than none)."""
