"""The request log's rules (levels, sampling, what an id may be), in process, on a real pipe."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest

from modelpack.serve.requestlog import RequestIds, RequestLog

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def lines_of(log: RequestLog, read_fd: int) -> list[dict[str, object]]:
    log.flush()
    os.set_blocking(read_fd, False)
    try:
        data = os.read(read_fd, 1 << 20)
    except BlockingIOError:
        data = b""
    return [json.loads(line) for line in data.splitlines()]


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read_fd, write_fd = os.pipe()
    yield read_fd, write_fd
    os.close(read_fd)
    os.close(write_fd)


def test_levels_and_sampling(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    warnings = RequestLog("m", "1", level="warning", fd=write_fd)
    for status in (200, 404, 500):
        warnings.request("GET", "/x", status, 0.001, f"id-{status}", 0, 10)
    assert [(line["status"], line["level"]) for line in lines_of(warnings, read_fd)] == [
        (404, "warning"),
        (500, "error"),
    ]
    none_sampled = RequestLog("m", "1", sample=0.0, fd=write_fd)
    for status in (200, 200, 400, 503):
        none_sampled.request("POST", "/v2/models/m/infer", status, 0.001, "id", 5, 10)
    assert [line["status"] for line in lines_of(none_sampled, read_fd)] == [400, 503]  # failures always


def test_a_line_escapes_what_the_client_chose(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    log = RequestLog("m", "1", fd=write_fd)
    hostile = '/v2/"}\n{"status": 200, "x": "\x1b[2J' + "a" * 500
    log.request("GET", hostile, 404, 0.0001, 'id"with\\quotes', 0, 10)
    (line,) = lines_of(log, read_fd)
    assert line["path"] == hostile[:256] + "..." and line["request_id"] == 'id"with\\quotes'
    assert (line["status"], line["model"], line["version"]) == (404, "m", "1")


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([(b"x-request-id", b"abc-123")], "abc-123"),
        ([(b"traceparent", f"00-{TRACE}-00f067aa0ba902b7-01".encode())], TRACE),
        ([(b"traceparent", f"00-{TRACE}-00f067aa0ba902b7-01".encode()), (b"x-request-id", b"mine")], "mine"),
        ([(b"x-request-id", b"has space")], None),  # not visible ASCII: a new id instead
        ([(b"x-request-id", b"a" * 129)], None),
        ([(b"x-request-id", "é".encode())], None),
        ([(b"traceparent", b"00-" + b"0" * 32 + b"-00f067aa0ba902b7-01")], None),  # all-zero: invalid
        ([(b"traceparent", b"00-nothex" + b"x" * 24 + b"-00f067aa0ba902b7-01")], None),
        ([], None),
    ],
)
def test_request_ids(headers: list[tuple[bytes, bytes]], expected: str | None) -> None:
    ids = RequestIds()
    got = ids.of(headers)
    if expected is not None:
        assert got == expected
    else:
        assert got.count("-") == 1 and got != ids.of(headers)  # made here, unique
