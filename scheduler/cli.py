"""`space-scheduler` entry point: builds the parser from the verb modules and turns errors into one line."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .errors import SchedulerError
from .redact import redact

# Each module registers its own verbs; a missing optional room must not break the others.
VERB_MODULES = (
    "scheduler.commands.queue_cmds",
    "scheduler.commands.check_cmd",
    "scheduler.commands.emulator_cmd",
    "scheduler.commands.worker_cmd",
    "scheduler.commands.space_cmds",
    "scheduler.commands.demo_cmd",
    "scheduler.commands.deploy_cmd",
    "scheduler.commands.recipe_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="space-scheduler",
        description="On-demand GPU job scheduler for Hugging Face Spaces.",
    )
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    for name in VERB_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(sub)
    return parser


# What a process killed by SIGPIPE reports (128 + 13): `list | head` ends the way `cat | head` does.
CLOSED_PIPE_EXIT = 141


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = int(args.handler(args) or 0)
        sys.stdout.flush()  # here, where a closed pipe can still be handled, not at interpreter exit
        return code
    except BrokenPipeError:
        return _closed_pipe()
    except SchedulerError as exc:
        print(f"space-scheduler: error: {redact(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("space-scheduler: interrupted", file=sys.stderr)
        return 130


def _closed_pipe() -> int:
    """The reader of our output went away (`list | head`): stop quietly. stdout is pointed at
    /dev/null so the interpreter's final flush does not raise again (Python's signal docs)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a real file (tests capture it)
        pass
    return CLOSED_PIPE_EXIT


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
