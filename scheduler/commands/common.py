"""What every verb shares: where the queue is, which token to use, and waiting on the Hub.

Queue names follow the `hf` CLI: `OWNER/NAME` is a Hub dataset; a local queue is a path (`./q`,
`../q`, `/abs`, `~/q`) or `file://PATH`; `hf://datasets/OWNER/NAME[/path/tasks.csv]` is the long
form. A bare word (`queue`) is refused as ambiguous rather than guessed.

Verbs that only read never create anything: a local queue that does not exist is an error, not a
new folder. Every Hub call a verb makes is bounded: a Hub that does not answer gives a one-line
error within `HUB_DEADLINE_S`, with a spinner on a terminal (plain lines otherwise) meanwhile.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Callable, TypeVar

from ..errors import SchedulerError, Unavailable, UserError

T = TypeVar("T")
HUB_PREFIX = "hf://"
FILE_PREFIX = "file://"
# A verb gives up on a silent Hub after this long (the promise is an answer within 30 s of the
# command starting; imports take a second or two before the first request).
HUB_DEADLINE_S = 25.0
# Per request, and how long a run of 429/5xx/network failures is waited out, for the CLI only:
# a person at a terminal wants an answer, a worker keeps its own longer defaults.
CLI_REQUEST_TIMEOUT_S = 10.0
CLI_OUTAGE_DEADLINE_S = 10.0
SPINNER_AFTER_S = 1.0
PLAIN_EVERY_S = 10.0


def add_queue_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--queue",
        default=os.environ.get("SCHEDULER_QUEUE"),
        help="OWNER/NAME (a Hub dataset), hf://datasets/OWNER/NAME[/path/tasks.csv], or a folder: ./q, /abs/q, "
             "file://PATH (default: $SCHEDULER_QUEUE)",
    )
    add_token_option(parser)


def add_token_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--token",
        default=None,
        help="Hub token (default: $HF_TOKEN, then the huggingface_hub login). Never printed.",
    )
    parser.add_argument("--endpoint", default=None, help="Hub endpoint (default: $HF_ENDPOINT)")


def resolve_queue(text: str) -> str:
    """The queue URL `TaskQueue.open` takes, from what a person typed.

    `OWNER/NAME` -> `hf://datasets/OWNER/NAME`; `./q`, `/abs`, `~/q`, `file://PATH` -> an absolute
    folder path; `hf://...` and `memory://...` unchanged. Raises UserError for anything else,
    saying which form was probably meant."""
    from .. import validation
    from ..errors import ValidationError

    text = (text or "").strip()
    if not text:
        raise UserError("no queue given: pass --queue OWNER/NAME (a Hub dataset) or ./folder, or set SCHEDULER_QUEUE")
    if text.startswith(HUB_PREFIX) and not text.startswith(f"{HUB_PREFIX}datasets/"):
        raise UserError(f"queue {text!r}: a queue is a Hub dataset: hf://datasets/OWNER/NAME, or OWNER/NAME")
    if text.startswith((HUB_PREFIX, "memory://")):
        return text
    if text.startswith(FILE_PREFIX):
        path = text[len(FILE_PREFIX):]
        if path.startswith("localhost/"):
            path = path[len("localhost"):]
        if not path:
            raise UserError(f"queue {text!r}: file:// needs a path, like file:///abs/queue or file://./queue")
        return str(Path(path).expanduser().resolve())
    if "://" in text:
        raise UserError(f"queue {text!r}: use OWNER/NAME or hf://datasets/OWNER/NAME for the Hub, "
                        f"./folder or file://PATH for a local queue")
    if text in (".", "..") or text.startswith(("/", "./", "../", "~")):
        return str(Path(text).expanduser().resolve())
    if text.count("/") == 1:
        try:
            return f"{HUB_PREFIX}datasets/{validation.repo_id(text, 'queue')}"
        except ValidationError as exc:
            raise UserError(f"queue {text!r} is neither a Hub dataset OWNER/NAME ({exc.message}) nor a path: "
                            f"write ./{text} for a local folder") from None
    raise UserError(f"queue {text!r} is ambiguous: write ./{text} for a local folder, or OWNER/{text.rsplit('/', 1)[-1]} "
                    f"(or hf://datasets/OWNER/NAME) for a Hub dataset")


def open_queue(args: argparse.Namespace, *, must_exist: bool = False, read_only: bool = False,
               short_deadlines: bool = False):
    """The TaskQueue named by `args.queue` (see `resolve_queue`).

    `must_exist`: a local folder that does not exist is a UserError, not a new folder (every
    queue verb but init and add); `read_only` verbs also want its tasks.csv and skip the Hub
    store's local write lock. `short_deadlines` (a person waiting at a terminal) gives a Hub queue
    the CLI's request timeout and outage deadline, so a silent Hub is reported instead of waited
    on for minutes; a worker keeps the store's longer defaults."""
    from .. import open_queue as open_with_waker
    from ..redact import register_secret

    url = resolve_queue(args.queue or "")
    register_secret(args.token)
    if url.startswith(HUB_PREFIX):
        _note_shadowed_folder(args.queue)
        options: dict = {}
        if short_deadlines:
            options.update(timeout=CLI_REQUEST_TIMEOUT_S, retry_deadline_s=CLI_OUTAGE_DEADLINE_S,
                           unavailable_deadline_s=CLI_OUTAGE_DEADLINE_S)
        if read_only:
            options["local_lock"] = False
        return open_with_waker(url, token=args.token, endpoint=_endpoint(args), **options)
    if "://" not in url and (must_exist or read_only):
        folder = Path(url)
        if not folder.is_dir():
            raise UserError(f"no queue at {url}: create it with `space-scheduler init --queue {args.queue}`")
        if read_only and not (folder / "tasks.csv").is_file():
            raise UserError(f"{url} has no tasks.csv: create the queue with `space-scheduler init --queue {args.queue}`")
    return open_with_waker(url, token=args.token, endpoint=_endpoint(args))


def _endpoint(args: argparse.Namespace) -> str | None:
    # Read now, not at import: the client fixes its default endpoint when first imported.
    return getattr(args, "endpoint", None) or os.environ.get("HF_ENDPOINT") or None


def _note_shadowed_folder(typed: str) -> None:
    if typed and not typed.startswith(HUB_PREFIX) and Path(typed).is_dir():
        print(f"space-scheduler: note: {typed} names the Hub dataset {typed}; for the folder here write ./{typed}",
              file=sys.stderr)


def hub_endpoint(queue_or_api) -> str:
    """The Hub address a queue's store (or an HfApi) talks to, for messages."""
    api = getattr(getattr(queue_or_api, "store", None), "api", None) or queue_or_api
    endpoint = getattr(api, "endpoint", None)
    if endpoint:
        return endpoint
    from huggingface_hub import constants

    return constants.ENDPOINT


def wait_for_hub(fn: Callable[[], T], what: str, endpoint: str | None, *, deadline_s: float = HUB_DEADLINE_S,
                 stream=None) -> T:
    """Run `fn` (Hub requests) and return its result, showing that we wait while it takes a while.

    Raises SchedulerError naming the Hub and `what` ("reading the queue") when it has not answered
    within `deadline_s` seconds or its outage outlasted the store's deadline; `fn`'s own errors
    propagate unchanged. The request keeps running in a daemon thread after a timeout: the
    process is about to exit, and an add is idempotent by task id."""
    if endpoint is None:  # a local queue: nothing to wait for
        return fn()
    stream = stream or sys.stderr
    box: dict = {}
    done = threading.Event()

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, daemon=True, name="hub-call").start()
    with _Waiting(stream, f"Waiting for the Hub at {endpoint} ({what})") as waiting:
        start = time.monotonic()
        while not done.wait(0.1):
            elapsed = time.monotonic() - start
            if elapsed > deadline_s:
                raise SchedulerError(f"the Hub at {endpoint} did not answer within {deadline_s:.0f}s ({what}); "
                                     "check the network, HF_ENDPOINT and https://status.huggingface.co")
            waiting.tick(elapsed)
    if "error" in box:
        raise _outage_message(box["error"], endpoint, what)
    return box["value"]


def _outage_message(exc: BaseException, endpoint: str, what: str) -> BaseException:
    """The store's "unavailable for N s" as one plain sentence; any other error unchanged."""
    cause = exc.__cause__ if isinstance(exc.__cause__, Unavailable) else exc if isinstance(exc, Unavailable) else None
    if cause is None:
        return exc
    return SchedulerError(f"the Hub at {endpoint} is not answering ({what}): {cause}")


class _Waiting:
    """After SPINNER_AFTER_S: a tqdm spinner with the elapsed time on a terminal; elsewhere (logs,
    pipes) one plain line, then one every PLAIN_EVERY_S."""

    FRAMES = "|/-\\"

    def __init__(self, stream, message: str):
        self.stream = stream
        self.message = message
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.bar = None
        self.next_plain = SPINNER_AFTER_S
        self.frame = 0

    def __enter__(self) -> "_Waiting":
        return self

    def tick(self, elapsed: float) -> None:
        if elapsed < SPINNER_AFTER_S:
            return
        if not self.tty:
            if elapsed >= self.next_plain:
                print(f"{self.message}: {elapsed:.0f}s", file=self.stream, flush=True)
                self.next_plain += PLAIN_EVERY_S
            return
        if self.bar is None:
            from tqdm.auto import tqdm

            # A terminal that reports no size (0x0) would make tqdm draw nothing at all; shutil
            # falls back to 80x24 there.
            size = shutil.get_terminal_size()
            self.bar = tqdm(total=None, file=self.stream, leave=False, bar_format="{desc} {elapsed}",
                            ncols=size.columns, nrows=size.lines)
        self.frame += 1
        self.bar.set_description_str(f"{self.FRAMES[self.frame % 4]} {self.message}", refresh=True)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()
