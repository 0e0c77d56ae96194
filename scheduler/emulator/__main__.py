"""`python -m scheduler.emulator --port P --data DIR [...]`: serve the Hub emulator in the foreground."""

import argparse
import sys

from .hub import DataDirBusy
from .server import add_server_arguments, run_from_args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scheduler.emulator", description=__doc__)
    add_server_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_from_args(args)
    except (DataDirBusy, ValueError) as exc:
        print(f"emulator: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"emulator: error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
