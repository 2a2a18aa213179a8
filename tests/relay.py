"""A TCP relay for tests of the client's transport (timeouts, retries, connection reuse)."""

from __future__ import annotations

import socket
import threading
import time


class SlowProxy:
    """A TCP relay in front of the real keyhost that can hold back the next response, counts the
    connections clients open through it, and keeps every byte clients send (``sent``)."""

    def __init__(self, target: str) -> None:
        self.connections = 0
        host, port = target.removeprefix("http://").split(":")
        self.target = (host, int(port))
        self.delay_next = 0.0
        self.sent: list[bytes] = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, responses: bool) -> None:
        try:
            while chunk := src.recv(1 << 16):
                if not responses:
                    self.sent.append(chunk)
                if responses and self.delay_next:
                    delay, self.delay_next = self.delay_next, 0.0
                    time.sleep(delay)
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass

    def close(self) -> None:
        self._stop = True
        self.server.close()
