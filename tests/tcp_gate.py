"""A TCP forwarder that can be closed and opened again, to cut a service off for a while.

``TcpGate(host, port)`` listens on a free 127.0.0.1 port and forwards every connection to
``host:port``. ``close()`` cuts the connections it forwards and resets new ones until
``open()``: to a client this looks like the service going down and coming back on the same
address (a registry outage without touching the shared registry).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType


class TcpGate:
    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._open = threading.Event()
        self._open.set()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._stopped = False
        self.refused = 0
        """Connections reset while the gate was closed."""
        self._thread = threading.Thread(target=self._accept, name="tcp-gate", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Cut every forwarded connection and reset new ones."""
        self._open.clear()
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            _shut(sock)

    def open(self) -> None:
        self._open.set()

    def stop(self) -> None:
        self._stopped = True
        self.close()
        _shut(self._listener)
        self._thread.join(timeout=5)

    def __enter__(self) -> TcpGate:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._open.is_set():
                self.refused += 1
                # RST instead of FIN: the client sees a refused service, not an empty answer.
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00" * 2)
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._sockets.update((client, server))
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        _shut(sink)
        _shut(source)
        with self._lock:
            self._sockets.discard(source)
            self._sockets.discard(sink)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
