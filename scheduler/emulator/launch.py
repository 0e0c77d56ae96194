"""How a supervised Space's replica is started: its files, command, environment and machine.

Each replica gets its own checkout (`spaces-checkout/<ns>--<name>@<n>`; the stable path
`spaces-checkout/<ns>--<name>` is a link to the newest one), so an old replica that still runs
during a hardware switch keeps the files it started with. Its environment is what the Hub puts in
a Space container (SYSTEM, SPACE_ID, SPACE_HOST, SPACE_HARDWARE, the Space's variables and
secrets), plus HF_ENDPOINT pointing at the emulator, and PATH starting with the fake `nvidia-smi`
of its flavor (machine.py). A Space with a `port` gets a private port per replica (ports.py).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .machine import path_with_machine
from .ports import free_port

if TYPE_CHECKING:
    from .hub import EmulatedHub


def subdomain(space_id: str) -> str:
    return re.sub(r"[^a-z0-9-]", "-", space_id.replace("/", "-").lower())


def checkout_root(hub: "EmulatedHub", space_id: str) -> Path:
    """The stable path of a Space's checkout: a link to its newest replica's files."""
    return hub.data_dir / "spaces-checkout" / space_id.replace("/", "--")


def replica_checkout(hub: "EmulatedHub", space_id: str, replica: int) -> Path:
    root = checkout_root(hub, space_id)
    return root.with_name(f"{root.name}@{replica}")


def remove_checkout(hub: "EmulatedHub", space_id: str, replica: int) -> None:
    """Delete a stopped replica's files, unless the stable link points at them."""
    folder = replica_checkout(hub, space_id, replica)
    root = checkout_root(hub, space_id)
    with contextlib.suppress(OSError):
        if root.is_symlink() and root.resolve() == folder.resolve():
            return
    shutil.rmtree(folder, ignore_errors=True)


def launch_plan(hub: "EmulatedHub", space_id: str, state: dict, replica: int,
                private_port: int | None = None) -> tuple[list[str], Path, dict] | None:
    """(command, cwd, env) for replica `replica` of `space_id`, or None when it has no app to run."""
    cfg = state["supervise"] or {}
    store = hub.store
    files = store.resolve("space", space_id, "main").tree
    app_files = {p: m for p, m in files.items() if p != ".gitattributes"}
    command = cfg.get("command")
    if cfg.get("cwd"):
        cwd = Path(cfg["cwd"])
    elif app_files:
        cwd = replica_checkout(hub, space_id, replica)
        if cwd.exists():
            shutil.rmtree(cwd)
        for path, meta in app_files.items():
            target = cwd / path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(store.blob_path(meta["oid"]), target)
        _point(checkout_root(hub, space_id), cwd)
    elif command:
        cwd = hub.data_dir
    else:
        return None
    if not command:
        app = app_file(cwd / "README.md")
        if not (cwd / app).exists():
            return None
        command = [sys.executable, app]
    command = [sys.executable if c in ("python", "python3") and i == 0 else c for i, c in enumerate(command)]
    ns, name = space_id.split("/", 1)
    env = {
        "SYSTEM": "spaces",
        "SPACE_ID": space_id,
        "SPACE_AUTHOR_NAME": ns,
        "SPACE_REPO_NAME": name,
        "SPACE_HOST": f"{subdomain(space_id)}.hf.space",
        "SPACE_HARDWARE": state["current"] or "",
        "HF_ENDPOINT": hub.base_url,
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "PYTHONUNBUFFERED": "1",
    }
    if cfg.get("port"):
        port = private_port or free_port()
        env.update({"PORT": str(port), "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1"})
    env.update({k: v["value"] for k, v in (state.get("variables") or {}).items()})
    env.update({k: v["value"] for k, v in (state.get("secrets") or {}).items()})
    env.update(cfg.get("env") or {})
    if hub.rules.current.gpu_machine:
        env["PATH"] = path_with_machine(hub.data_dir, state["current"], env.get("PATH"))
    return list(command), cwd, env


def _point(link: Path, target: Path) -> None:
    """Make `link` a symlink to `target` (replacing a folder or link there)."""
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{link.name}.link")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(target.name)
    if link.is_dir() and not link.is_symlink():
        shutil.rmtree(link)
    os.replace(tmp, link)


def app_file(readme: Path) -> str:
    try:
        text = readme.read_text(errors="replace")
    except OSError:
        return "app.py"
    if text.startswith("---"):
        front = text.split("---", 2)[1] if text.count("---") >= 2 else ""
        m = re.search(r"^app_file:\s*['\"]?([^'\"\n]+?)['\"]?\s*$", front, re.M)
        if m:
            return m.group(1)
    return "app.py"
