"""The real runtime process under bounded attacks on 127.0.0.1: memory stays bounded, liveness probes answer.

Phases run one after another (a body just under max_body_bytes and answers over max_response_bytes,
clients that never read their answer, unfinished chunked bodies, slow-loris sockets) while a probe thread
GETs /v2/health/live every 0.2 s. Figures are printed (run with -s to see them).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import orjson
import pytest
from support.serving import runtime

from modelpack.serve.config import ConfigError, load

MIB = 1024 * 1024
TIMEOUT_S = 3.0  # body and write timeouts the server runs with here, so the phases are short
PEAK_BOUND_MIB = 400  # the server's VmHWM over every phase; measured 225 MiB on a 2-core box
PROBE_BOUND_S = 1.0


def vm(pid: int, key: str) -> int:
    """A /proc/PID/status figure in KiB (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {key} for {pid}")


class Probe:
    """GET /v2/health/live every 0.2 s on a fresh connection; the worst latency and peak RSS per phase."""

    def __init__(self, url: str, pid: int) -> None:
        self.url, self.pid = url, pid
        self.phase = "start"
        self.worst: dict[str, float] = {}
        self.rss: dict[str, int] = {}
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            phase = self.phase
            started = time.monotonic()
            try:
                ok = httpx.get(f"{self.url}/v2/health/live", timeout=5).status_code == 200
            except httpx.HTTPError as exc:
                ok = False
                self.failures.append(f"{phase}: {exc!r}")
            took = time.monotonic() - started
            if not ok:
                self.failures.append(f"{phase}: probe failed after {took:.2f} s")
            self.worst[phase] = max(self.worst.get(phase, 0.0), took)
            self.rss[phase] = max(self.rss.get(phase, 0), vm(self.pid, "VmRSS"))

    @contextmanager
    def running(self) -> Iterator[Probe]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(10)


def rows_body(rows: int, outputs: list[str] | None = None) -> bytes:
    # Flat data, one short row of iris features repeated: the smallest body for a given number of rows.
    data = b",".join([b"5,3,1,0"] * rows)
    outs = b"" if outputs is None else b', "outputs": ' + orjson.dumps([{"name": n} for n in outputs])
    return (
        b'{"inputs": [{"name": "input", "shape": [' + str(rows).encode() + b', 4], "datatype": "FP32", '
        b'"data": [' + data + b"]}]" + outs + b"}"
    )


def post_head(port: int, length: int | None, rcvbuf: int = 0) -> socket.socket:
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect: the window stays small
    sock.connect(("127.0.0.1", port))
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    sock.sendall(f"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\n{framing}\r\n\r\n".encode())
    return sock


def drain(sock: socket.socket, within: float) -> tuple[bytes, bool]:
    """Everything the server sends until it closes; (data, closed) where closed is False at `within`."""
    sock.settimeout(0.5)
    got: list[bytes] = []
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(1 << 20)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return b"".join(got), True
        if not chunk:
            return b"".join(got), True
        got.append(chunk)
    return b"".join(got), False


def all_closed(socks: list[socket.socket], within: float) -> list[bytes]:
    """What each socket received; fails if the server has not closed every one within `within` s."""
    deadline = time.monotonic() + within
    answers = []
    for sock in socks:
        data, closed = drain(sock, max(0.5, deadline - time.monotonic()))
        assert closed, f"server still holds the connection after {within} s; it sent {data[:200]!r}"
        answers.append(data)
        sock.close()
    return answers


def phase(probe: Probe, name: str, attack: Callable[[], None]) -> None:
    probe.phase = name
    attack()
    time.sleep(0.5)  # a probe or two after the attack ends, still counted in its phase


def test_attacks_keep_memory_bounded_and_probes_answering(tmp_path: Path) -> None:
    env = {f"MODELPACK_SERVE_{k}_TIMEOUT_S": str(TIMEOUT_S) for k in ("BODY", "WRITE")}
    with runtime(tmp_path, **env) as (url, proc):
        port = int(url.rsplit(":", 1)[1])
        limit = 8 * MIB  # the default max_body_bytes
        started = time.monotonic()
        probe = Probe(url, proc.pid)
        with probe.running():

            def big_bodies() -> None:
                rows = (limit - 200) // 8
                body = rows_body(rows, ["label"])
                assert limit - 1024 < len(body) <= limit
                ok = httpx.post(f"{url}/v2/models/iris/infer", content=body, timeout=60)
                assert ok.status_code == 200, ok.text[:300]
                assert ok.json()["outputs"][0]["shape"] == [rows]
                # All outputs of the same rows: an answer over 4 x max_body_bytes, refused naming them.
                huge = httpx.post(f"{url}/v2/models/iris/infer", content=rows_body(rows), timeout=60)
                assert huge.status_code == 500, huge.text[:300]
                assert "max_response_bytes" in huge.json()["error"]
                assert "'probabilities' FP32" in huge.json()["error"]
                over = httpx.post(f"{url}/v2/models/iris/infer", content=b" " * (limit + 1), timeout=60)
                assert over.status_code == 413 and "max_body_bytes" in over.json()["error"]

            def non_readers() -> None:
                body = rows_body(300_000)  # a ~2.3 MiB body, a ~20 MiB answer
                socks = [post_head(port, len(body), rcvbuf=4096) for _ in range(3)]
                for sock in socks:
                    sock.sendall(body)
                time.sleep(TIMEOUT_S + 2)  # never read: the server must give up on the answer
                for got in all_closed(socks, TIMEOUT_S + 5):
                    head, _, rest = got.partition(b"\r\n\r\n")
                    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                    # Only what the kernel's socket buffers took before the server dropped the answer.
                    assert length > 16 * MIB and len(rest) < length / 2, (length, len(rest))

            def unfinished_chunked() -> None:
                socks = [post_head(port, None) for _ in range(25)]
                chunk = b"%x\r\n%s\r\n" % (MIB, b" " * MIB)
                for sock in socks:
                    with suppress(OSError):  # a refused one may be closed while it is still sending
                        sock.sendall(chunk)
                answers = all_closed(socks, TIMEOUT_S + 5)
                busy = [a for a in answers if a.startswith(b"HTTP/1.1 503")]
                # 1 MiB each against a 16 MiB budget: some are refused with Retry-After, none buffered
                assert busy and all(b"retry-after: 1" in a.lower() for a in busy), answers[:3]

            def slow_loris() -> None:
                socks = []
                for _ in range(200):
                    sock = socket.create_connection(("127.0.0.1", port))
                    sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Half")
                    socks.append(sock)
                assert all(a == b"" for a in all_closed(socks, TIMEOUT_S + 5))

            figures = []
            for name, attack in (
                ("body just under max_body_bytes", big_bodies),
                ("3 clients never read their answer", non_readers),
                ("25 unfinished chunked bodies", unfinished_chunked),
                ("200 slow-loris sockets", slow_loris),
            ):
                t0 = time.monotonic()
                phase(probe, name, attack)
                figures.append((name, time.monotonic() - t0))
        hwm = vm(proc.pid, "VmHWM") / 1024
        after = httpx.get(f"{url}/v2/health/live", timeout=5)
    total = time.monotonic() - started
    for name, seconds in figures:
        print(
            f"\n{name}: {seconds:.1f} s, peak RSS {probe.rss.get(name, 0) / 1024:.0f} MiB, "
            f"worst probe {probe.worst.get(name, 0) * 1000:.0f} ms"
        )
    print(f"\nall phases {total:.1f} s, VmHWM {hwm:.0f} MiB")
    assert after.status_code == 200
    assert probe.failures == []
    assert set(probe.worst) >= {name for name, _ in figures}
    assert max(probe.worst.values()) < PROBE_BOUND_S, probe.worst
    assert hwm < PEAK_BOUND_MIB, hwm


def test_limits_come_from_the_file_and_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "serving.json"
    path.write_text('{"name": "m", "handler": "h:H", "max_body_bytes": 1000, "idle_timeout_s": 2}')
    env = {"MODELPACK_SERVE_BODY_TIMEOUT_S": "1.5", "MODELPACK_SERVE_INFLIGHT_BYTES": "5000"}
    config = load(path, env)
    assert (config.max_body_bytes, config.idle_timeout_s, config.body_timeout_s) == (1000, 2, 1.5)
    assert (config.inflight_limit, config.response_limit, config.write_timeout_s) == (5000, 4000, 30.0)
    assert load(path, {}).inflight_limit == 2000  # 0 means twice max_body_bytes
    with pytest.raises(ConfigError, match="MODELPACK_SERVE_MAX_BODY_BYTES='8M' is not a number"):
        load(path, {"MODELPACK_SERVE_MAX_BODY_BYTES": "8M"})
    with pytest.raises(ConfigError, match="'inflight_bytes' must be at least 'max_body_bytes'"):
        load(path, {"MODELPACK_SERVE_INFLIGHT_BYTES": "999"})
    with pytest.raises(ConfigError, match="'body_timeout_s' must be positive"):
        load(path, {"MODELPACK_SERVE_BODY_TIMEOUT_S": "0"})
