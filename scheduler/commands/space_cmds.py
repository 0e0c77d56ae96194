"""`space-scheduler space ...`: every Space operation of the "Manage your Space" guide, with the
huggingface_hub 2.x names (duplicate_repo, volumes instead of storage).

Secret values are read from an environment variable or stdin, never from argv (visible in `ps`
and shell history), and no command prints a token or a secret value.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys

from ..errors import UserError
from ..redact import redact, register_secret
from .common import CLI_REQUEST_TIMEOUT_S, add_token_option, hub_endpoint, wait_for_hub

DEFAULT_PAID_SLEEP_S = 3600


def register(sub: argparse._SubParsersAction) -> None:
    space = sub.add_parser("space", help="manage a Space: status, hardware, pause, secrets, variables, volumes, logs...")
    verbs = space.add_subparsers(dest="space_verb", metavar="ACTION")
    verbs.required = True

    def verb(name: str, help: str, handler) -> argparse.ArgumentParser:
        p = verbs.add_parser(name, help=help)
        p.add_argument("--space", default=os.environ.get("SPACE_ID"), help="OWNER/NAME (default: $SPACE_ID)")
        add_token_option(p)
        p.set_defaults(handler=handler)
        return p

    p = verb("status", "stage, hardware (current and requested), sleep time", cmd_status)
    p.add_argument("--json", action="store_true")

    p = verb("hardware", "request a hardware flavor (restarts the Space)", cmd_hardware)
    p.add_argument("flavor")
    p.add_argument("--sleep-time", type=int, default=None,
                   help=f"seconds of inactivity before sleeping (default on paid hardware: {DEFAULT_PAID_SLEEP_S}; -1 = never)")
    p.add_argument("--wait", type=float, default=0, metavar="SECONDS", help="wait until the Space runs on it")

    verb("pause", "pause the Space (stops billing until restarted)", cmd_pause)
    p = verb("restart", "restart the Space", cmd_restart)
    p.add_argument("--factory", action="store_true", help="factory reboot (rebuild without cache)")
    p = verb("sleep", "set the sleep time (seconds of inactivity; -1 = never)", cmd_sleep)
    p.add_argument("seconds", type=int)

    p = verb("secret", "set, delete or list secrets (values are never shown)", cmd_secret)
    p.add_argument("action", choices=["set", "delete", "list"])
    p.add_argument("key", nargs="?")
    p.add_argument("--from-env", metavar="VAR", help="read the value from this environment variable (default: stdin)")
    p.add_argument("--description", default=None)

    p = verb("variable", "set, delete or list variables", cmd_variable)
    p.add_argument("action", choices=["set", "delete", "list"])
    p.add_argument("key", nargs="?")
    p.add_argument("value", nargs="?")
    p.add_argument("--description", default=None)

    p = verb("volumes", "mount Hub repos or buckets (replaces persistent storage)", cmd_volumes)
    p.add_argument("action", choices=["set", "delete"])
    p.add_argument("mounts", nargs="*", metavar="hf://[TYPE/]SOURCE[/PATH]:/MOUNT[:ro|:rw]")

    p = verb("logs", "print the Space's run (or build) logs", cmd_logs)
    p.add_argument("--build", action="store_true")
    p.add_argument("--follow", action="store_true")

    p = verb("create", "create a Space (--space OWNER/NAME)", cmd_create)
    p.add_argument("space_id", nargs="?", metavar="OWNER/NAME", help=argparse.SUPPRESS)  # the old form
    _config_options(p)
    p.add_argument("--sdk", default="gradio", choices=["gradio", "docker", "static", "streamlit"])
    p.add_argument("--exist-ok", action="store_true")

    p = verb("duplicate", "duplicate the Space --from OWNER/TEMPLATE as --space OWNER/NAME (duplicate_repo)",
             cmd_duplicate)
    p.add_argument("--from", dest="from_space", default=None, metavar="OWNER/NAME", help="the Space to copy")
    p.add_argument("old_ids", nargs="*", metavar="FROM [TO]", help=argparse.SUPPRESS)  # the old form
    _config_options(p)
    p.add_argument("--exist-ok", action="store_true")

    p = verb("upload", "upload a folder to the Space (restarts it)", cmd_upload)
    p.add_argument("folder")
    p.add_argument("--path-in-repo", default=None)
    p.add_argument("--message", default=None)


def _config_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hardware", default=None)
    p.add_argument("--sleep-time", type=int, default=None)
    p.add_argument("--private", action="store_true")
    p.add_argument("--secret", action="append", default=[], metavar="KEY[=ENVVAR]",
                   help="secret KEY with the value of $ENVVAR (default $KEY); repeatable")
    p.add_argument("--variable", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--volume", action="append", default=[], metavar="hf://...:/MOUNT[:ro]")


# ---------------------------------------------------------------- helpers


def _api(args):
    from huggingface_hub import HfApi

    from ..hub import ensure_http_timeout

    ensure_http_timeout(CLI_REQUEST_TIMEOUT_S)
    register_secret(args.token)
    # Read now, not at import: the client fixes its default endpoint when first imported.
    args.endpoint = args.endpoint or os.environ.get("HF_ENDPOINT") or None
    return HfApi(token=args.token, endpoint=args.endpoint)


def _space(args) -> str:
    if not args.space:
        raise UserError("which Space? pass --space OWNER/NAME or set SPACE_ID")
    from .. import validation

    return validation.repo_id(args.space, "space")


def _controller(args):
    from ..hardware import SpaceController

    return SpaceController(_space(args), api=_api(args))


def _print_runtime(runtime, as_json: bool = False) -> None:
    if as_json:
        print(json.dumps(runtime.to_dict()))
        return
    moving = f" -> {runtime.requested_hardware}" if runtime.requested_hardware not in (None, runtime.hardware) else ""
    sleep = "never" if runtime.sleep_time in (None, -1) else f"{runtime.sleep_time}s"
    print(f"{runtime.stage}  hardware {runtime.hardware or '-'}{moving}  sleep {sleep}")
    if runtime.error:
        print(f"error: {runtime.error}")


def _hub_call(fn, what: str, api, *, bounded: bool = True):
    """`fn`'s result; a Hub error as one line naming `what`. `bounded`: a silent Hub is an error
    within the CLI's deadline, with a spinner meanwhile (an upload may rightly take longer)."""
    from huggingface_hub.errors import HfHubHTTPError

    from ..hub import describe

    try:
        return wait_for_hub(fn, what, hub_endpoint(api)) if bounded else fn()
    except HfHubHTTPError as exc:
        raise UserError(f"{what}: {describe(exc)}") from None


def _pairs(items: list[str]) -> list[dict]:
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--variable {item!r} must look like KEY=VALUE")
        out.append({"key": key, "value": value})
    return out


def _secrets(items: list[str]) -> list[dict]:
    out = []
    for item in items:
        key, _, var = item.partition("=")
        var = var or key
        value = os.environ.get(var)
        if not value:
            raise UserError(f"--secret {key}: the environment variable {var} is not set")
        register_secret(value)
        out.append({"key": key, "value": value})
    return out


def _volumes(items: list[str]):
    if not items:
        return None
    from huggingface_hub import Volume
    from huggingface_hub.utils import parse_hf_mount

    volumes = []
    for raw in items:
        try:
            mount = parse_hf_mount(raw)
        except ValueError as exc:
            raise UserError(f"volume {raw!r}: {exc}") from None
        volumes.append(Volume(type=mount.source.type, source=mount.source.id, mount_path=mount.mount_path,
                              read_only=mount.read_only, path=mount.source.path_in_repo or None,
                              revision=mount.source.revision or None))
    return volumes


def _sleep_for(flavor: str | None, sleep_time: int | None) -> int | None:
    from ..hardware import is_paid

    if sleep_time is None and is_paid(flavor):
        return DEFAULT_PAID_SLEEP_S  # a forgotten paid Space otherwise bills forever
    return sleep_time


# ---------------------------------------------------------------- handlers


def cmd_status(args) -> int:
    controller = _controller(args)
    _print_runtime(_hub_call(controller.runtime, "status", controller.api), args.json)
    return 0


def cmd_hardware(args) -> int:
    from ..hardware import FLAVORS

    if args.flavor not in FLAVORS:
        raise UserError(f"{args.flavor!r} is not a hardware flavor; choose one of: {', '.join(FLAVORS)}")
    controller = _controller(args)
    runtime = _hub_call(lambda: controller.request(args.flavor, _sleep_for(args.flavor, args.sleep_time)),
                        "hardware request", controller.api)
    if args.wait:
        runtime = controller.wait(lambda rt: rt.settled_on(args.flavor), args.wait) or controller.last_seen or runtime
    _print_runtime(runtime)
    return 0


def cmd_pause(args) -> int:
    controller = _controller(args)
    _print_runtime(_hub_call(controller.pause, "pause", controller.api))
    return 0


def cmd_restart(args) -> int:
    controller = _controller(args)
    _print_runtime(_hub_call(lambda: controller.restart(factory_reboot=args.factory), "restart", controller.api))
    return 0


def cmd_sleep(args) -> int:
    controller = _controller(args)
    _print_runtime(_hub_call(lambda: controller.set_sleep_time(args.seconds), "sleep time", controller.api))
    return 0


def cmd_secret(args) -> int:
    api, space = _api(args), _space(args)
    if args.action == "list":
        secrets = _hub_call(lambda: api.get_space_secrets(space), "list secrets", api)
        for key, secret in sorted(secrets.items()):
            print(f"{key}\t{getattr(secret, 'description', None) or ''}".rstrip())
        return 0
    if not args.key:
        raise UserError(f"secret {args.action} needs a KEY")
    if args.action == "delete":
        _hub_call(lambda: api.delete_space_secret(space, args.key), "delete secret", api)
        print(f"deleted secret {args.key}")
        return 0
    if args.from_env:
        value = os.environ.get(args.from_env)
        if not value:
            raise UserError(f"the environment variable {args.from_env} is not set")
    elif sys.stdin.isatty():
        value = getpass.getpass(f"value of {args.key}: ")
    else:
        value = sys.stdin.readline().rstrip("\r\n")
    if not value:
        raise UserError("empty secret value")
    register_secret(value)
    _hub_call(lambda: api.add_space_secret(space, args.key, value, description=args.description), "set secret", api)
    print(f"set secret {args.key} (the Space restarts)")
    return 0


def cmd_variable(args) -> int:
    api, space = _api(args), _space(args)
    if args.action == "list":
        variables = _hub_call(lambda: api.get_space_variables(space), "list variables", api)
        for key, var in sorted(variables.items()):
            print(f"{key}={redact(var.value or '')}")
        return 0
    if not args.key:
        raise UserError(f"variable {args.action} needs a KEY")
    if args.action == "delete":
        _hub_call(lambda: api.delete_space_variable(space, args.key), "delete variable", api)
        print(f"deleted variable {args.key}")
        return 0
    if args.value is None:
        raise UserError("variable set needs KEY VALUE")
    _hub_call(lambda: api.add_space_variable(space, args.key, args.value, description=args.description), "set variable", api)
    print(f"set variable {args.key} (the Space restarts)")
    return 0


def cmd_volumes(args) -> int:
    api, space = _api(args), _space(args)
    if args.action == "delete":
        _hub_call(lambda: api.delete_space_volumes(space), "delete volumes", api)
        print("deleted every volume")
        return 0
    volumes = _volumes(args.mounts)
    if not volumes:
        raise UserError("volumes set needs at least one hf://...:/MOUNT")
    _hub_call(lambda: api.set_space_volumes(space, volumes), "set volumes", api)
    for volume in volumes:
        print(f"mounted {volume.type} {volume.source} at {volume.mount_path}")
    return 0


def cmd_logs(args) -> int:
    api, space = _api(args), _space(args)
    try:
        for line in _hub_call(lambda: api.fetch_space_logs(space, build=args.build, follow=args.follow), "logs", api,
                              bounded=False):
            print(redact(line.rstrip("\n")), flush=True)
    except KeyboardInterrupt:
        pass
    return 0


def _deprecated(verb: str, old: str, new: str) -> None:
    """The old positional spelling still works for now, with one line saying what replaces it."""
    print(f"space-scheduler: `space {verb} {old}` is deprecated: write `space {verb} {new}`", file=sys.stderr)


def cmd_create(args) -> int:
    if args.space_id:
        if args.space and args.space != os.environ.get("SPACE_ID"):
            raise UserError("give the Space once: --space OWNER/NAME")
        _deprecated("create", args.space_id, f"--space {args.space_id}")
        args.space = args.space_id
    api, space = _api(args), _space(args)
    url = _hub_call(lambda: api.create_repo(
        space, repo_type="space", space_sdk=args.sdk, private=args.private or None, exist_ok=args.exist_ok,
        space_hardware=args.hardware, space_sleep_time=_sleep_for(args.hardware, args.sleep_time),
        space_secrets=_secrets(args.secret) or None, space_variables=_pairs(args.variable) or None,
        space_volumes=_volumes(args.volume)), "create", api)
    print(f"created {url}")
    return 0


def cmd_duplicate(args) -> int:
    if args.old_ids:
        if len(args.old_ids) > 2 or args.from_space:
            raise UserError("write space duplicate --from OWNER/TEMPLATE --space OWNER/NAME")
        source, *target = args.old_ids
        flags = f"--from {source}" + (f" --space {target[0]}" if target else "")
        _deprecated("duplicate", " ".join(args.old_ids), flags)
        args.from_space = source
        # The old form's TO defaulted to the same name under your account, never to $SPACE_ID.
        args.space = target[0] if target else None
    if not args.from_space:
        raise UserError("which Space to copy? pass --from OWNER/NAME")
    from .. import validation

    source = validation.repo_id(args.from_space, "from")
    # Without --space (nor $SPACE_ID): the same name under your account, as duplicate_repo does.
    target = validation.repo_id(args.space, "space") if args.space else source.split("/", 1)[1]
    api = _api(args)
    url = _hub_call(lambda: api.duplicate_repo(
        source, target, repo_type="space", private=args.private or None, exist_ok=args.exist_ok,
        space_hardware=args.hardware, space_sleep_time=_sleep_for(args.hardware, args.sleep_time),
        space_secrets=_secrets(args.secret) or None, space_variables=_pairs(args.variable) or None,
        space_volumes=_volumes(args.volume)), "duplicate", api)
    print(f"duplicated {source} to {url}")
    return 0


def cmd_upload(args) -> int:
    api, space = _api(args), _space(args)
    if not os.path.isdir(args.folder):
        raise UserError(f"{args.folder!r} is not a folder")
    info = _hub_call(lambda: api.upload_folder(repo_id=space, repo_type="space", folder_path=args.folder,
                                               path_in_repo=args.path_in_repo, commit_message=args.message),
                     "upload", api, bounded=False)
    print(f"uploaded {args.folder} to {space}: {getattr(info, 'commit_url', info)}")
    return 0
