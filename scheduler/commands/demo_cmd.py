"""`space-scheduler demo`: the whole loop offline, on the embedded Hub emulator.

The emulator runs the scheduler's Space as the Hub would: the app (space_app/ plus the scheduler
package, uploaded by the same code as `deploy`) runs as a child process that is restarted on
every hardware change, and every second on paid hardware is billed.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import random
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

DEMO_USER = "demo"
DEMO_TOKEN = "hf_demo_local_emulator_token"  # the emulator's own; never a real Hub token
SPACE = f"{DEMO_USER}/space-scheduler"
QUEUE_REPO = f"{DEMO_USER}/tasks"
DATASET = f"{DEMO_USER}/reviews-mini"
# One flavor per burst: the worker drains it on a single boot (one change up, one down).
NUMPY_EXAMPLES = [
    (f"{DEMO_USER}/tiny-classifier", DATASET, "t4-small", {"epochs": 3}),
    (f"{DEMO_USER}/tiny-classifier", DATASET, "t4-small", {"epochs": 5, "lr": 0.8}),
    (f"{DEMO_USER}/tiny-classifier", DATASET, "t4-small", {"epochs": 2, "batch_size": 32}),
]
# The transformers recipe on the tiny random-initialised models seeded at start-up
# (scheduler/recipes/tiny.py): a few seconds of Trainer steps each on one CPU thread.
TINY_DATASET = f"{DEMO_USER}/tiny-sentiment"
TRANSFORMERS_EXAMPLES = [
    (f"{DEMO_USER}/tiny-bert-sentiment", TINY_DATASET, "t4-small",
     {"recipe": "transformers", "learning_rate": 5e-3, "max_steps": 120, "batch_size": 16}),
    (f"{DEMO_USER}/tiny-gpt2", TINY_DATASET, "t4-small",
     {"recipe": "transformers", "lora": {"r": 8}, "learning_rate": 2e-2, "max_steps": 60, "batch_size": 16}),
    (f"{DEMO_USER}/tiny-bert-sentiment", TINY_DATASET, "t4-small",
     {"recipe": "transformers", "learning_rate": 5e-3, "epochs": 6, "batch_size": 16}),
]
TRAINING_STACK = ("torch", "transformers", "datasets", "accelerate", "peft")
# Seconds the Space's app gets to give its hardware back after SIGTERM when the demo ends (Ctrl-C
# must have stopped every child within 5 s: this grace, then the emulator's own shutdown). A
# hardware switch keeps the emulator's longer grace: the old replica records its outcome first.
APP_STOP_GRACE_S = 2.5
_URL = re.compile(r"https?://\S+")
_STOP = threading.Event()  # set by Ctrl-C or SIGTERM (see _stop_on_signals)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the scheduler's Space end to end on the offline Hub emulator",
                       description="Starts the Hub emulator, creates the queue dataset, a demo dataset and the "
                                   "scheduler's Space, and runs the Space's app; open the printed URL, submit a "
                                   "task and watch the Space switch to the GPU, train and come back. Ctrl-C stops.")
    p.add_argument("--data", default=None, help="emulator data folder (default: a temporary folder)")
    p.add_argument("--port", type=int, default=0, help="port of the Space's app (default: a free one)")
    p.add_argument("--submit", type=int, default=0, metavar="N", help="submit N example tasks")
    p.add_argument("--recipe", choices=("auto", "transformers", "numpy"), default="auto",
                   help="what the example tasks train: the transformers recipe on a tiny model made on the spot "
                        "(needs `pip install 'space-scheduler[train]'`), or the numpy example; auto picks "
                        "transformers when it is installed")
    p.add_argument("--until-idle", action="store_true",
                   help="no browser needed: exit with a summary once every task is finished and the Space is back "
                        "on cpu-basic (exit 0 only if all are DONE)")
    p.add_argument("--boot-delay", type=float, default=2.0, help="emulated seconds for a Space to restart")
    p.add_argument("--timeout", type=float, default=240.0, help="with --until-idle, give up after this many seconds")
    p.add_argument("--rules", default=None, metavar="NAME=VALUE,...",
                   help="turn off or tune the emulated Hub's rules, all on by default (as `space-scheduler "
                        "emulator --rules`)")
    p.set_defaults(handler=cmd_demo)


def reviews_csv(n: int = 240, seed: int = 1) -> bytes:
    """A small labelled text dataset the example callback learns in a second."""
    rng = random.Random(seed)
    good = ["great", "lovely", "superb", "fun", "moving", "brilliant"]
    bad = ["awful", "boring", "dull", "broken", "tedious", "bad"]
    filler = ["the", "film", "plot", "actors", "music", "was", "and", "really", "quite", "ending"]
    out = io.StringIO()
    out.write("text,label\n")
    for _ in range(n):
        label = rng.choice(["pos", "neg"])
        words = rng.sample(filler, 4) + rng.sample(good if label == "pos" else bad, 2)
        rng.shuffle(words)
        out.write(f"\"{' '.join(words)}\",{label}\n")
    return out.getvalue().encode()


def missing_training_stack() -> list[str]:
    """The packages of the `train` extra this Python cannot import (checked without importing torch)."""
    return [name for name in TRAINING_STACK if importlib.util.find_spec(name) is None]


def choose_recipe(asked: str) -> str:
    missing = missing_training_stack()
    if asked == "transformers" and missing:
        from ..errors import UserError

        raise UserError(f"--recipe transformers needs {', '.join(missing)}: pip install 'space-scheduler[train]'")
    if asked == "auto":
        return "numpy" if missing else "transformers"
    return asked


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StatusLine:
    """One line rewritten in place on a terminal; elsewhere (logs, pipes) a line per change."""

    def __init__(self, stream=sys.stdout):
        self.stream = stream
        self.tty = stream.isatty()
        self.last = ""

    def show(self, text: str, key: str | None = None) -> None:
        """`key`: what must change for a new line off a terminal (not the ticking clock and meter)."""
        if self.tty:
            if text != self.last:
                self.last = text
                self.stream.write("\r\033[K" + text)
                self.stream.flush()
            return
        key = text if key is None else key
        if key != self.last:
            self.last = key
            self.stream.write(f"{time.strftime('%H:%M:%S')} {text}\n")
            self.stream.flush()

    def done(self) -> None:
        if self.tty and self.last:
            self.stream.write("\n")
            self.stream.flush()
        self.last = ""


def say(message: str) -> None:
    print(message, flush=True)


def without_dead_links(line: str) -> str | None:
    """A deploy line with the emulator's repo pages and webhook targets (no page answers there) shown
    as paths; None for a line that was only such a URL. The demo prints only URLs that answer."""
    if _URL.fullmatch(line.strip()):
        return None
    return _URL.sub(lambda m: urlsplit(m.group(0)).path or "/", line)


def setup(hub_url: str, port: int, recipe: str = "numpy", hub_data: str | Path = ".") -> None:
    """The demo's data (and, for the transformers recipe, its tiny models), the queue, the Space with
    its code and settings, and its app started."""
    import httpx
    from huggingface_hub import HfApi

    from ..deploy import DeployConfig, deploy

    api = HfApi(endpoint=hub_url, token=DEMO_TOKEN)
    api.create_repo(DATASET, repo_type="dataset", exist_ok=True)
    api.upload_file(path_or_fileobj=reviews_csv(), path_in_repo="train.csv", repo_id=DATASET, repo_type="dataset",
                    commit_message="A tiny sentiment dataset for the demo")
    say(f"Dataset: {DATASET} (train.csv)")
    # The emulator has no OAuth provider: off SYSTEM=spaces gradio's "Sign in with Hugging Face" is
    # a mock that signs in as the owner of the Space's token, the demo user. The app trusts that mock
    # only when told to, and only on loopback (scheduler/access.py). Its caches and work dir live in
    # the demo's folder, which a run without --data removes at the end.
    data = Path(hub_data)
    app_env = {"SYSTEM": "emulator", "SCHEDULER_MOCK_LOGIN": "1", "HF_HOME": str(data / "space-hf-home"),
               "SCHEDULER_WORK_DIR": str(data / "space-work"), "GRADIO_TEMP_DIR": str(data / "space-gradio")}
    if recipe == "transformers":
        from ..recipes.tiny import seed_demo_repos

        repos = seed_demo_repos(api, DEMO_USER)
        say(f"Tiny random-initialised models made here: {repos['classifier']}, {repos['causal_lm']}; "
            f"dataset {repos['dataset']}")
        # The emulated GPU is this machine's CPU: torch's default of one thread per core only fights
        # the emulator and the app for the same cores (a step is many times slower).
        app_env["OMP_NUM_THREADS"] = "1"
    # The webhook goes to the app's local port, where the supervisor is about to start it.
    deploy(DeployConfig(space_id=SPACE, queue_repo=QUEUE_REPO, token=DEMO_TOKEN, endpoint=hub_url,
                        webhook_url=f"http://127.0.0.1:{port}/webhooks/queue"),
           say=_say_deploy)
    # A demo wants to see the Space react within a second, not at the production poll of 15 s.
    api.add_space_variable(SPACE, "SCHEDULER_POLL_S", "1")
    api.add_space_variable(SPACE, "SCHEDULER_REFRESH_S", "1")
    response = httpx.post(f"{hub_url}/_emulator/spaces/{SPACE}/supervise",
                          json={"port": port, "env": app_env}, timeout=30)
    response.raise_for_status()


def _say_deploy(line: str) -> None:
    shown = without_dead_links(line)
    if shown is not None:
        say(f"  deploy {shown}")


def runtime_of(hub) -> dict:
    return hub.billing(SPACE)


def app_answers(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def describe_state(bill: dict, counts: dict[str, int], started: float) -> tuple[str, str]:
    """(the line, the part of it whose change is news)."""
    hardware = bill["current"] or "?"
    target = f" -> {bill['requested']}" if bill["requested"] and bill["requested"] != bill["current"] else ""
    tasks = " ".join(f"{n} {s}" for s, n in counts.items() if n) or "no tasks"
    gpu = sum(bill["billed_seconds"].values())
    key = f"Space {bill['stage']} on {hardware}{target} | {tasks}"
    return f"[{time.monotonic() - started:5.0f}s] {key} | GPU {gpu:.0f}s, billed ${bill['totals']['usd']:.4f}", key


def summary(bill: dict, counts: dict[str, int]) -> str:
    gpu = sum(bill["billed_seconds"].values())
    return (f"Tasks done: {counts.get('DONE', 0)} of {sum(counts.values())}"
            + "".join(f", {n} {s}" for s, n in counts.items() if n and s != "DONE")
            + f"\nHardware changes: {bill['hardware_changes']}"
            + f"\nTime on paid hardware: {gpu:.1f}s, billed as {bill['totals']['billed_minutes']} started minute(s)"
            + f"\nBilled: ${bill['totals']['usd']:.4f} (per started minute, as the Hub bills)"
            + f"\nHardware now: {bill['current']} (requested {bill['requested']}, stage {bill['stage']})")


def cmd_demo(args) -> int:
    from ..emulator.rules import Rules
    from ..errors import UserError

    try:
        rules = Rules().with_changes(args.rules)
    except ValueError as exc:
        raise UserError(f"--rules: {exc}") from None
    recipe = choose_recipe(args.recipe)
    _stop_on_signals()
    temporary = not args.data
    data = Path(args.data) if args.data else Path(tempfile.mkdtemp(prefix="space-scheduler-demo-"))
    try:
        return _run(args, data, recipe, rules)
    finally:
        if temporary:
            shutil.rmtree(data, ignore_errors=True)


def _run(args, data: Path, recipe: str, rules) -> int:
    from ..emulator.server import start_emulator
    from ..queue import TaskQueue
    from ..tasks import Task

    port = args.port or _free_port()
    app_url = f"http://127.0.0.1:{port}/"
    line = StatusLine()
    started = time.monotonic()
    with start_emulator(data, boot_delay=args.boot_delay, stop_grace=10.0, rules=rules) as hub:
        try:
            kept = "kept" if args.data else "removed at exit"
            say(f"Hub emulator: billing at {hub.url}/_emulator/spaces/{SPACE}/billing (data in {data}, {kept})")
            if recipe == "numpy" and args.recipe == "auto":
                say(f"Example tasks use the numpy example: the transformers recipe needs "
                    f"{', '.join(missing_training_stack())} (pip install 'space-scheduler[train]').")
            setup(hub.url, port, recipe, data)
            queue = TaskQueue.open(f"hf://datasets/{QUEUE_REPO}", token=DEMO_TOKEN, endpoint=hub.url)
            while not (app_answers(app_url) and runtime_of(hub)["stage"] == "RUNNING"):
                bill = runtime_of(hub)
                if bill["stage"] in ("RUNTIME_ERROR", "NO_APP_FILE", "BUILD_ERROR"):
                    line.done()
                    say(f"The Space did not start ({bill['stage']}); its log:\n"
                        + _tail(hub.hub.spaces.log_path(SPACE)))
                    return 1
                state = f"starting the Space's app ({bill['stage']} on {bill['current'] or '?'})"
                line.show(f"[{time.monotonic() - started:5.0f}s] {state}", state)
                _pause(0.3)
            line.done()
            say(f"\nThe scheduler's Space is up: {app_url}")
            say(f"Space logs: {hub.hub.spaces.log_path(SPACE)}")
            examples = TRANSFORMERS_EXAMPLES if recipe == "transformers" else NUMPY_EXAMPLES
            if args.submit:
                tasks = [Task.new(m, d, h, params=p, submitted_by=DEMO_USER) for m, d, h, p in
                         (examples * (args.submit // len(examples) + 1))[: args.submit]]
                queue.add_many(tasks)
                say(f"Submitted {len(tasks)} example task(s) for {', '.join(sorted({t.hardware for t in tasks}))} "
                    f"({recipe} recipe)")
            if not args.until_idle:
                model, dataset, _, params = examples[0]
                say("Open it, sign in, submit a task and watch the Space switch to the GPU and back. "
                    f"For example: model {model}, dataset {dataset}, parameters {json.dumps(params)}. "
                    "Ctrl-C stops everything.")
            return _watch(args, hub, queue, line, started)
        except KeyboardInterrupt:
            line.done()
            say("Stopping: the Space's app gets SIGTERM and gives its hardware back.")
            return 0
        finally:
            # The app (every replica) first: its worker releases paid hardware on SIGTERM. Then the emulator.
            hub.hub.spaces.supervisor.stop_all(APP_STOP_GRACE_S)
            bill = runtime_of(hub)
            if bill["hardware_changes"] or args.until_idle:
                counts = _counts(queue) if "queue" in locals() else {}
                say(summary(bill, counts))
                if counts:
                    say("\n".join(task_lines(_tasks(queue))))


def _stop_on_signals() -> None:
    """Ctrl-C and SIGTERM both end the demo through its cleanup (the app and the emulator stopped,
    the temporary folder removed), even when started with SIGINT ignored (`cmd &` in a script).
    The handler only raises a flag that the demo's loops check: an exception raised at any
    bytecode could leave one of the in-process emulator's locks held, and the cleanup, which asks
    the emulator, would then wait forever."""

    def request_stop(signum, frame):
        _STOP.set()

    try:
        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
    except ValueError:  # not the main thread: signals are not ours to change
        pass


def _pause(seconds: float) -> None:
    """Sleep, or end the demo (as Ctrl-C does) when a stop was asked for."""
    if _STOP.wait(seconds):
        raise KeyboardInterrupt


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def task_lines(tasks) -> list[str]:
    """One line per task: what it trained, how the loss moved, where the model went."""
    lines = []
    for task in tasks:
        result = dict(task.result or {})
        if "eval_loss" in result and "initial_eval_loss" in result:
            what = f"eval loss {result['initial_eval_loss']} -> {result['eval_loss']}"
        elif "loss" in result:
            what = f"loss {result['loss']}"
        else:
            what = task.error or ""
        if "eval_accuracy" in result:
            what += f", accuracy {result['eval_accuracy']}"
        where = f"; pushed to {result['repo_id']}" if result.get("repo_id") else ""
        lines.append(f"  {task.id} {task.status.value:<9} {task.model_id}: {what}{where}")
    return lines


def _tasks(queue) -> list:
    try:
        return queue.list()
    except Exception:  # a summary must not hide the exit status behind a traceback
        return []


def _counts(queue) -> dict[str, int]:
    try:
        return {k: v for k, v in queue.counts().items()}
    except Exception:
        return {}


def _watch(args, hub, queue, line: StatusLine, started: float) -> int:
    deadline = time.monotonic() + args.timeout
    while True:
        bill = runtime_of(hub)
        counts = _counts(queue)
        line.show(*describe_state(bill, counts, started))
        if args.until_idle:
            finished = counts and not counts.get("PENDING") and not counts.get("RUNNING")
            settled = bill["current"] == bill["requested"] == "cpu-basic" and bill["stage"] == "RUNNING"
            if finished and settled:
                line.done()
                ok = counts.get("DONE", 0) == sum(counts.values()) == args.submit
                say("All tasks done and the Space is back on cpu-basic." if ok else "Not every task is DONE.")
                return 0 if ok else 1
            if time.monotonic() > deadline:
                line.done()
                say(f"Gave up after {args.timeout:.0f}s.")
                return 1
        _pause(0.5)
