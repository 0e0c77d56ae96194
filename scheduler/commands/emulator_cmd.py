"""`space-scheduler emulator`: serve an offline Hugging Face Hub on loopback for tests and demos."""

from __future__ import annotations

from ..errors import UserError


def register(subparsers) -> None:
    from ..emulator.server import add_server_arguments

    parser = subparsers.add_parser(
        "emulator",
        help="run an offline Hub emulator (repos, Spaces, Jobs) on loopback",
        description="Serve an offline Hugging Face Hub that the real huggingface_hub client talks to "
                    "through HF_ENDPOINT. State persists in --data; Ctrl-C stops it and its Space apps.",
    )
    add_server_arguments(parser)
    parser.set_defaults(handler=handler)


def handler(args) -> int:
    from ..emulator.hub import DataDirBusy
    from ..emulator.server import run_from_args

    try:
        return run_from_args(args)
    except DataDirBusy as exc:
        raise UserError(str(exc)) from None
    except ValueError as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:
        raise UserError(f"cannot listen on {args.host}:{args.port}: {exc}") from None
