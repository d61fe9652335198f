"""A TCP proxy on 127.0.0.1 that caps every connection, a stand-in for a CDN-backed registry.

Each connection, in each direction, is held to `rate` bytes per second (a token bucket with a 64 KiB burst)
and every byte is delayed by `latency` seconds (20 ms each way adds 40 ms to a round trip). One connection
then moves at most `rate`; N connections move N times as much, as a CDN's per-connection shaping allows.

    .venv/bin/python bench/throttle_proxy.py 127.0.0.1:5000            # 25 MB/s, 20 ms; prints its port
    .venv/bin/python bench/throttle_proxy.py 127.0.0.1:5000 --rate-mb 50 --latency-ms 5

Used by transfer_bench.py as a context manager (`with ThrottleProxy(port) as proxy: proxy.host`), its event
loop in a thread of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import threading
from collections.abc import Sequence

BURST = 64 * 1024
SLICE = 16 * 1024


class ThrottleProxy:
    def __init__(self, upstream_port: int, rate: float = 25e6, latency: float = 0.020) -> None:
        self.upstream_port, self.rate, self.latency = upstream_port, rate, latency
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="throttle-proxy")
        self._server: asyncio.base_events.Server | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> ThrottleProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        self._server.close()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(self._pipe(client_r, up_w), self._pipe(up_r, client_w), return_exceptions=True)
        for w in (client_w, up_w):
            with contextlib.suppress(OSError):
                w.close()

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(maxsize=32)

        async def read() -> None:
            try:
                while data := await src.read(SLICE * 4):
                    await queue.put((loop.time() + self.latency, data))
            finally:
                await queue.put(None)

        async def write() -> None:
            credit = loop.time()  # when the bucket would be empty again
            while (item := await queue.get()) is not None:
                due, data = item
                if (wait := due - loop.time()) > 0:
                    await asyncio.sleep(wait)
                for i in range(0, len(data), SLICE):
                    piece = data[i : i + SLICE]
                    now = loop.time()
                    credit = max(credit, now - BURST / self.rate) + len(piece) / self.rate
                    if credit > now:
                        await asyncio.sleep(credit - now)
                    dst.write(piece)
                    await dst.drain()
            with contextlib.suppress(OSError, RuntimeError):
                if dst.can_write_eof():
                    dst.write_eof()

        reader = asyncio.ensure_future(read())
        try:
            await write()
        finally:
            reader.cancel()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("upstream", help="127.0.0.1:PORT of the registry")
    parser.add_argument("--rate-mb", type=float, default=25.0, help="MB/s per connection and direction")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="added to every byte, each way")
    opts = parser.parse_args(argv)
    host, _, port = opts.upstream.rpartition(":")
    if host not in ("127.0.0.1", "localhost"):
        raise SystemExit("the upstream must be on 127.0.0.1")
    with ThrottleProxy(int(port), opts.rate_mb * 1e6, opts.latency_ms / 1000) as proxy:
        print(f"proxy on {proxy.host} -> {opts.upstream}; Ctrl-C stops it", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
