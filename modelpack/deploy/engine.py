"""The Docker engine the deployer talks to, and the small I/O it needs beside the SDK: which engine, whether
its loopback is ours, free ports, images, files into containers, one HTTP request or admin-socket line.
"""

from __future__ import annotations

import io
import os
import socket
import tarfile
import urllib.parse
from typing import Any

from modelpack.errors import DeployError


def engine_host(environ: dict[str, str] | None = None) -> str:
    return (environ if environ is not None else dict(os.environ)).get(
        "DOCKER_HOST"
    ) or "unix:///var/run/docker.sock"


def is_local_engine(host: str) -> bool:
    """Whether containers on the host network are reachable on this machine's loopback."""
    if host.startswith("unix://") or host.startswith("npipe://"):
        return True
    parsed = urllib.parse.urlparse(host)
    return parsed.scheme in ("tcp", "http", "https") and parsed.hostname in ("127.0.0.1", "localhost", "::1")


def connect(host: str, timeout: int = 30) -> Any:
    """A docker SDK client for `host`; one line when no engine answers there."""
    try:
        import docker

        # ssh:// goes through the system's ssh client (its keys, agent and known_hosts), not paramiko
        ssh = host.startswith("ssh://")
        client = docker.DockerClient(base_url=host, version="auto", timeout=timeout, use_ssh_client=ssh)
        client.ping()
    except Exception as e:  # the SDK raises many types: refused, no socket, ssh failure, timeout
        raise DeployError(
            f"no Docker engine answers at {host} ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
            "nothing was changed",
            hint="start the engine, or set DOCKER_HOST (unix://, tcp:// or ssh://user@host)",
        ) from None
    return client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_in_use(address: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError:
            return True
    return False


def address_on(container: Any, network: str) -> str:
    """The container's IP address on a bridge network (HAProxy's runtime API takes addresses, not names)."""
    nets = (container.attrs.get("NetworkSettings") or {}).get("Networks") or {}
    return str((nets.get(network) or {}).get("IPAddress") or "0.0.0.0")


def admin_direct(port: int, line: str) -> str:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(line.encode())
            parts = []
            while chunk := sock.recv(65536):
                parts.append(chunk)
    except OSError as e:
        raise DeployError(f"could not reach the proxy's runtime API on 127.0.0.1:{port}: {e}") from None
    return b"".join(parts).decode(errors="replace")


def http_direct(url: str, method: str, body: bytes | None) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return int(r.status), r.read()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read()


def ensure_image(client: Any, image: str, what: str, pull: bool = True) -> None:
    try:
        client.images.get(image)
        return
    except Exception:
        pass
    if pull:
        try:
            client.images.pull(image)
            return
        except Exception as e:
            raise DeployError(
                f"the Docker engine could not pull the {what} image {image}: {short_error(e)}; "
                "nothing was changed",
                hint="check that the engine reaches (and trusts) that registry"
                + (
                    ", or set the proxy image with `modelpack env set ... --proxy-image`"
                    if what == "proxy"
                    else ""
                ),
            ) from None
    raise DeployError(f"the {what} image {image} is not in the Docker engine")


def tar_of(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def logs_of(container: Any) -> str:
    try:
        return str(container.logs(tail=30).decode(errors="replace").strip())
    except Exception:
        return ""


def short_error(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {text[:300]}"
