"""An offline Hugging Face Hub on loopback, spoken to by the real `huggingface_hub` client.

    from scheduler.emulator import start_emulator
    with start_emulator(tmp_dir, boot_delay=0.2) as hub:
        api = HfApi(endpoint=hub.url, token="hf_anything")

See `server.start_emulator` (in-process thread) and `server.spawn_emulator` (subprocess).
"""

from .app import create_app
from .faults import FaultConfig
from .hub import DataDirBusy, EmulatedHub
from .server import EmulatorHandle, EmulatorProcess, spawn_emulator, start_emulator

__all__ = [
    "create_app",
    "start_emulator",
    "spawn_emulator",
    "EmulatorHandle",
    "EmulatorProcess",
    "EmulatedHub",
    "FaultConfig",
    "DataDirBusy",
]
