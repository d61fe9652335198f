"""A TCP proxy on 127.0.0.1 that counts the client's bytes and can tear one connection (resume tests)."""

from __future__ import annotations

import contextlib
import socket
import threading


class TearingProxy:
    """Forwards 127.0.0.1:port to the registry and, once, cuts a client connection after `cut_after`
    client bytes. `buffered` proxies hold each request until it is whole, as nginx does by default, so the
    registry never sees the torn request; unbuffered ones pass the partial body through."""

    def __init__(self, upstream_port: int, cut_after: int, buffered: bool) -> None:
        self.upstream_port = upstream_port
        self.cut_after = cut_after
        self.buffered = buffered
        self.received = 0
        self.cuts = 0
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self._stop = True
        self._server.close()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _count(self, n: int) -> bool:
        """Count n client bytes; True when this connection must be cut now (only ever once)."""
        with self._lock:
            self.received += n
            if self.cuts == 0 and self.received > self.cut_after:
                self.cuts += 1
                return True
            return False

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()
        pending = b""
        try:
            while True:
                data = client.recv(65536)
                if not data:
                    break
                if self._count(len(data)):
                    if not self.buffered:
                        upstream.sendall(data[: max(0, len(data) // 2)])
                    break
                if not self.buffered:
                    upstream.sendall(data)
                    continue
                pending += data
                while (request := _whole_request(pending)) is not None:
                    upstream.sendall(pending[:request])
                    pending = pending[request:]
        except OSError:
            pass
        finally:
            for s in (client, upstream):
                try:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    s.close()
                except OSError:
                    pass


def _whole_request(buf: bytes) -> int | None:
    """Length of the first complete HTTP/1.1 request in buf (Content-Length bodies only), else None."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    length = 0
    for line in buf[:end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    total = end + 4 + length
    return total if len(buf) >= total else None


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
