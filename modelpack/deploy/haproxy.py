"""The reverse proxy of the Docker target: HAProxy's configuration and its runtime API, pure.

Why HAProxy (docs/deploy.md): its runtime API (the stats socket, `level admin`) changes a server's address,
weight and state in the running process, so a switch, a canary weight and a rollback are each one command
sent to the socket, with no reload and no connection dropped; nginx needs a configuration reload (new
workers, old ones draining) for each. The configuration below never changes while the proxy runs: it
declares `SLOTS` servers in maintenance, and the deployer points a slot at a release container and gives
it a weight. `retry-on` with `redispatch` resends a request whose connection failed to another server, so a
release container that dies between two requests costs no request either.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

SLOTS = 8  # stable + canary + the warm previous release + one starting, with room to spare
BACKEND = "releases"
_SERVER = re.compile(r"^s[0-9]+$")


def config(bind: str, port: int, admin_port: int, slots: int = SLOTS) -> str:
    """The whole configuration; the release servers start in maintenance at a placeholder address."""
    servers = "\n".join(f"    server s{i} 127.0.0.1:1 weight 0 disabled" for i in range(slots))
    return f"""global
    stats socket ipv4@127.0.0.1:{admin_port} level admin
    maxconn 4096
    hard-stop-after 30s

defaults
    mode http
    timeout connect 2s
    timeout client 120s
    timeout server 120s
    timeout http-keep-alive 10s
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response
    option http-server-close

frontend public
    bind {bind}:{port}
    default_backend {BACKEND}

backend {BACKEND}
    balance roundrobin
{servers}
"""


@dataclass(frozen=True)
class Server:
    slot: str  # s0..s7
    address: str
    port: int
    weight: int
    ready: bool  # serving (not in maintenance, not draining)
    state: str = "ready"  # ready | drain | maint


def route(slot: str, address: str, port: int, weight: int) -> list[str]:
    """Commands that send `weight` percent of requests to address:port through `slot`."""
    _check(slot, weight)
    return [
        f"set server {BACKEND}/{slot} addr {address} port {port}",
        f"set server {BACKEND}/{slot} weight {weight}",
        f"set server {BACKEND}/{slot} state ready",
    ]


def reweight(slot: str, weight: int) -> list[str]:
    _check(slot, weight)
    return [f"set server {BACKEND}/{slot} weight {weight}", f"set server {BACKEND}/{slot} state ready"]


def drain(slot: str) -> list[str]:
    """No new request goes to `slot`; those in flight finish."""
    _check(slot, 0)
    return [f"set server {BACKEND}/{slot} state drain"]


def retire(slot: str) -> list[str]:
    _check(slot, 0)
    return [f"set server {BACKEND}/{slot} state maint"]


def _check(slot: str, weight: int) -> None:
    # Commands are sent as one line separated by ';': a slot or weight of another shape could smuggle one.
    if not _SERVER.match(slot) or not 0 <= weight <= 256:
        raise ValueError(f"bad slot {slot!r} or weight {weight}")


def script(commands: list[str]) -> str:
    """One line for the admin socket: every command in order, answers concatenated."""
    return "; ".join(commands) + "\n"


def parse_servers(text: str) -> dict[str, Server]:
    """`show servers state releases` -> slot -> Server: admin bits 0x01/0x02 maintenance, 0x08 drain
    (0x04, the configuration's `disabled`, lingers after `state ready` and is not counted); operational
    state 0 is stopped."""
    out: dict[str, Server] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 19 or parts[0].startswith("#") or parts[1] != BACKEND:
            continue
        slot, address, op, admin, weight, port = parts[3], parts[4], parts[5], parts[6], parts[7], parts[18]
        try:
            admin_bits = int(admin)
            # 0x01 forced maint, 0x02 inherited maint, 0x08 forced drain; 0x04 (config `disabled`) is
            # cleared by `state ready` in practice but may linger in the bits, so it is not counted
            state = "maint" if admin_bits & 0x03 or op == "0" else "drain" if admin_bits & 0x08 else "ready"
            out[slot] = Server(slot, address, int(port), int(weight), state == "ready", state)
        except ValueError:
            continue
    return out


def share(servers: Mapping[str, Server]) -> dict[str, int]:
    """slot -> weight of the slots that take new requests."""
    return {s.slot: s.weight for s in servers.values() if s.ready and s.weight > 0}
