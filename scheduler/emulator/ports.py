"""A Space's public port, forwarded to whichever replica is current.

On the Hub every replica is its own container and the Space's URL reaches the current one. Here
the replicas are processes on one host: two of them (the old one during the overlap after a
hardware switch, and the new one) cannot both listen on the Space's port. So when a supervised
Space has a `port`, the emulator listens on it and forwards each connection to the private port
of the Space's current replica; each replica gets its own free port in `PORT` and
`GRADIO_SERVER_PORT`. A connection stays with the replica it reached, as it would on the Hub.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Callable


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class PortForwarder:
    """Listens on `host:port`; each connection goes to `host:target()` (None or refused: closed)."""

    def __init__(self, port: int, target: Callable[[], int | None], host: str = "127.0.0.1"):
        self.port = port
        self._target = target
        self._host = host
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind((host, port))
        except OSError:
            self._sock.close()
            raise
        self._sock.listen(64)
        self._closed = False
        threading.Thread(target=self._accept_forever, daemon=True, name=f"port-{port}").start()

    def _accept_forever(self) -> None:
        while not self._closed:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        target = self._target()
        if target is None:
            client.close()
            return
        try:
            upstream = socket.create_connection((self._host, target), timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
        back.start()
        _pump(client, upstream)
        back.join()
        client.close()
        upstream.close()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        # Half-close so the other direction can finish (an HTTP answer after the request's EOF).
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError):
            src.shutdown(socket.SHUT_RD)
