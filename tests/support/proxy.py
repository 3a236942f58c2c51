"""A loopback TCP proxy that cuts connections on demand: a server that goes away.

``cut()`` closes every live connection (a lost connection mid-transaction);
``refuse(True)`` closes new ones at once (the server is down); ``drop_reply_to(marker)``
forwards the next client packet containing ``marker`` (say ``b"COMMIT"``), lets the
server answer, and closes the connection before the answer reaches the client: a commit
that landed but whose outcome the client never learned.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Proxy:
    """Forwards 127.0.0.1:``port`` to ``target``; start with :meth:`start`."""

    target: tuple[str, int]
    port: int = 0
    cuts: int = 0
    _refusing: bool = False
    _marker: bytes | None = None
    _conns: set[tuple[socket.socket, socket.socket]] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _listener: socket.socket | None = None
    dropped_replies: int = 0

    def start(self) -> Proxy:
        """Listen and accept in a daemon thread."""
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(128)
        sock.settimeout(0.2)
        self.port = sock.getsockname()[1]
        self._listener = sock
        threading.Thread(target=self._accept, daemon=True, name="proxy-accept").start()
        return self

    def stop(self) -> None:
        """Stop accepting and close every connection."""
        self._stop.set()
        self.cut()
        if self._listener is not None:
            self._listener.close()

    def cut(self) -> int:
        """Close every live connection; return how many."""
        with self._lock:
            conns = list(self._conns)
            self._conns.clear()
        for pair in conns:
            _close(*pair)
        self.cuts += len(conns)
        return len(conns)

    def refuse(self, on: bool) -> None:
        """While on, new connections are closed at once and live ones are cut."""
        self._refusing = on
        if on:
            self.cut()

    def drop_reply_to(self, marker: bytes) -> None:
        """Arm: the next packet containing ``marker`` reaches the server; its reply does not."""
        self._marker = marker

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._refusing:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            pair = (client, upstream)
            with self._lock:
                self._conns.add(pair)
            threading.Thread(target=self._pump, args=(pair,), daemon=True).start()

    def _pump(self, pair: tuple[socket.socket, socket.socket]) -> None:
        client, upstream = pair
        try:
            while True:
                ready, _, _ = select.select([client, upstream], [], [], 0.5)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is client:
                        upstream.sendall(data)
                        if self._marker is not None and self._marker in data:
                            self._marker = None
                            time.sleep(0.2)  # the server commits and answers...
                            self.dropped_replies += 1
                            return  # ...and the answer never reaches the client
                    else:
                        client.sendall(data)
                with self._lock:
                    if pair not in self._conns:
                        return
        except OSError:
            return
        finally:
            with self._lock:
                self._conns.discard(pair)
            _close(client, upstream)


def _close(*socks: socket.socket) -> None:
    for sock in socks:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()
