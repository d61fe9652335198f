"""The Docker target's containers: one reverse proxy (HAProxy) that owns the public port, and one container
per release that runs, each on a free loopback port (host network) or its own address (a bridge network).

Everything the deployer needs to know survives its own restart on the engine itself: the containers'
labels say which environment and release each serves and on which port; the proxy's runtime API says
which slot sends what share of requests where. Only the proxy's admin socket is reached through `docker
exec` (bash's /dev/tcp, which Debian's and the official HAProxy images have), so the same code drives a
local engine, a remote one (DOCKER_HOST=tcp:// or ssh://) and a bridge network. Release containers are
probed over HTTP when the engine runs on this machine, and through `docker exec python3` in the release
container when it does not (its port is then on another machine's loopback).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modelpack.deploy import haproxy
from modelpack.deploy.engine import (
    address_on,
    admin_direct,
    ensure_image,
    free_port,
    http_direct,
    is_local_engine,
    logs_of,
    port_in_use,
    short_error,
    tar_of,
)
from modelpack.deploy.spec import DeploySpec
from modelpack.errors import DeployError

LABEL = "dev.modelpack.deploy"  # value: the key of (repository, environment)
L_ROLE = "dev.modelpack.deploy.role"  # proxy | release
L_ENV = "dev.modelpack.deploy.env"
L_REPO = "dev.modelpack.deploy.repository"
L_DIGEST = "dev.modelpack.deploy.digest"  # the release index digest the container runs
L_PORT = "dev.modelpack.deploy.port"
L_ADMIN = "dev.modelpack.deploy.admin-port"
L_CONFIG = "dev.modelpack.deploy.config"  # sha256 of the proxy's configuration: a spec change recreates it
CONFIG_PATH = "/tmp/modelpack-haproxy.cfg"
RETIRED_PATH = "/tmp/modelpack-retired.json"
DEFAULT_PROXY_IMAGE = "haproxy:2.6"
PROBE = (
    "import sys,urllib.request as u\n"
    "r=u.Request(sys.argv[1],data=sys.stdin.buffer.read() or None,method=sys.argv[2],"
    "headers={'Content-Type':'application/json'})\n"
    "try:\n"
    "    x=u.urlopen(r,timeout=10);print(x.status);sys.stdout.flush();sys.stdout.buffer.write(x.read())\n"
    "except u.HTTPError as e:\n"
    "    print(e.code);sys.stdout.flush();sys.stdout.buffer.write(e.read())\n"
)


def key_of(repository: str, env: str) -> str:
    return hashlib.sha256(f"{repository}\n{env}".encode()).hexdigest()[:12]


@dataclass(frozen=True)
class ReleaseContainer:
    id: str
    name: str
    digest: str  # release index digest
    address: str  # where the proxy reaches it
    port: int
    running: bool


@dataclass
class DockerSite:
    """One environment of one repository on one engine: its proxy and its release containers."""

    client: Any
    host: str
    repository: str
    env: str
    spec: DeploySpec

    @property
    def key(self) -> str:
        return key_of(self.repository, self.env)

    @property
    def local(self) -> bool:
        return is_local_engine(self.host)

    @property
    def host_network(self) -> bool:
        return self.spec.network == "host"

    def _name(self, what: str) -> str:
        return f"modelpack-{self.env}-{self.key}-{what}"

    def _labels(self, role: str, **extra: str) -> dict[str, str]:
        return {LABEL: self.key, L_ROLE: role, L_ENV: self.env, L_REPO: self.repository[:200], **extra}

    def _containers(self, role: str) -> list[Any]:
        return list(
            self.client.containers.list(
                all=True, filters={"label": [f"{LABEL}={self.key}", f"{L_ROLE}={role}"]}
            )
        )

    # --- the proxy ---------------------------------------------------------------------------------------

    def proxy(self) -> Any | None:
        found = [c for c in self._containers("proxy") if c.status == "running"]
        return found[0] if found else None

    def ensure_proxy(self, image: str, info: Callable[[str], None]) -> tuple[Any, bool]:
        """The running proxy (created when absent or its configuration changed); (container, created)."""
        bind = self.spec.address if self.host_network else "0.0.0.0"
        existing = self._containers("proxy")
        for c in existing:
            labels = c.labels or {}
            wanted = _config_hash(image, bind, self.spec.port, self.spec.network)
            if c.status == "running" and labels.get(L_CONFIG) == wanted:
                return c, False
        admin = free_port() if self.host_network else 9999
        text = haproxy.config(bind, self.spec.port, admin)
        for c in existing:  # stopped, or made for another port or image: replaced
            info(
                f"replacing the proxy container {c.name} (its port, image or network changed, or it stopped)"
            )
            with contextlib.suppress(Exception):
                c.remove(force=True)
        if self.host_network and self.local and port_in_use(self.spec.address, self.spec.port):
            raise DeployError(
                f"port {self.spec.port} on {self.spec.address} is in use by another process: the proxy "
                "cannot "
                "own it; nothing was changed",
                hint="stop what listens there, or pick another with `modelpack env set ... --port N`",
            )
        ensure_image(self.client, image, "proxy")
        kwargs: dict[str, Any] = {
            "name": self._name("proxy"),
            "command": ["haproxy", "-db", "-W", "-f", CONFIG_PATH],
            "labels": self._labels(
                "proxy",
                **{L_PORT: str(self.spec.port), L_ADMIN: str(admin)},
                **{L_CONFIG: _config_hash(image, bind, self.spec.port, self.spec.network)},
            ),
            "user": "haproxy",
            "restart_policy": {"Name": "unless-stopped"},
        }
        if self.host_network:
            kwargs["network_mode"] = "host"
        else:
            kwargs["network"] = self.spec.network
            kwargs["ports"] = {f"{self.spec.port}/tcp": (self.spec.address, self.spec.port)}
        try:
            container = self.client.containers.create(image, **kwargs)
            container.put_archive("/tmp", tar_of("modelpack-haproxy.cfg", text.encode()))
            container.start()
        except Exception as e:
            raise DeployError(f"could not start the proxy container from {image}: {short_error(e)}") from None
        info(f"started the proxy {container.name} ({image}) on {self.spec.address}:{self.spec.port}")
        self._wait_proxy(container)
        return container, True

    def _wait_proxy(self, container: Any, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            container.reload()
            if container.status not in ("created", "running"):
                break
            with contextlib.suppress(DeployError):
                self.admin(container, ["show servers state " + haproxy.BACKEND])
                return
            time.sleep(0.1)
        logs = logs_of(container)
        with contextlib.suppress(Exception):
            container.remove(force=True)
        if "cannot bind socket" in logs or "Address already in use" in logs:
            raise DeployError(
                f"port {self.spec.port} on {self.spec.address} is in use: the proxy cannot own it; nothing "
                "was changed",
                hint="stop what listens there, or pick another with `modelpack env set ... --port N`",
            )
        raise DeployError(f"the proxy container did not start: {logs[-400:] or '(no output)'}")

    def admin(self, container: Any, commands: list[str]) -> str:
        """Send commands to the proxy's runtime API (no reload); their answers."""
        port = int((container.labels or {}).get(L_ADMIN, "9999"))
        line = haproxy.script(commands)
        if self.local and self.host_network:
            # the socket is on this machine's loopback: a millisecond, where `docker exec` takes ~0.2 s
            return admin_direct(port, line)
        shell = f'exec 3<>/dev/tcp/127.0.0.1/{port} || exit 7; printf "%s" "$1" >&3; cat <&3'
        try:
            code, out = container.exec_run(["bash", "-c", shell, "modelpack", line], demux=False)
        except Exception as e:
            raise DeployError(f"could not reach the proxy's runtime API: {short_error(e)}") from None
        text = (out or b"").decode(errors="replace")
        if code != 0:
            raise DeployError(f"the proxy's runtime API did not answer (exit {code}): {text.strip()[:200]}")
        return text

    def servers(self, container: Any) -> dict[str, haproxy.Server]:
        return haproxy.parse_servers(self.admin(container, [f"show servers state {haproxy.BACKEND}"]))

    def load_retired(self, proxy: Any) -> dict[str, float]:
        """When each release left traffic, as the last deployer saved it in the proxy container."""
        try:
            bits, _ = proxy.get_archive(RETIRED_PATH)
            with tarfile.open(fileobj=io.BytesIO(b"".join(bits))) as tar:
                member = tar.next()
                f = tar.extractfile(member) if member is not None and member.size < 65536 else None
                data = json.loads(f.read()) if f is not None else {}
            return {str(k): float(v) for k, v in dict(data).items()}
        except Exception:  # absent (a new proxy) or unreadable: every release left traffic just now
            return {}

    def save_retired(self, proxy: Any, retired: dict[str, float]) -> None:
        with contextlib.suppress(Exception):  # keep-warm then restarts from the next pass: harmless
            proxy.put_archive("/tmp", tar_of(RETIRED_PATH.rsplit("/", 1)[1], json.dumps(retired).encode()))

    # --- release containers ------------------------------------------------------------------------------

    def releases(self) -> list[ReleaseContainer]:
        out = []
        for c in self._containers("release"):
            labels = c.labels or {}
            address = "127.0.0.1" if self.host_network else address_on(c, self.spec.network)
            out.append(
                ReleaseContainer(
                    c.id,
                    c.name,
                    labels.get(L_DIGEST, ""),
                    address,
                    int(labels.get(L_PORT, "0")),
                    c.status == "running",
                )
            )
        return out

    def start_release(self, digest: str, image: str, info: Callable[[str], None]) -> ReleaseContainer:
        ensure_image(self.client, image, "release", pull=True)
        port = free_port() if self.host_network else 8080
        name = self._name(digest.split(":", 1)[1][:12] + f"-{int(time.time() * 1000) % 10**8}")
        env = {
            "PORT": str(port),
            "HOST": "127.0.0.1" if self.host_network else "0.0.0.0",
            "MODELPACK_INDEX_DIGEST": digest,
        }
        kwargs: dict[str, Any] = {
            "name": name,
            "environment": env,
            "labels": self._labels("release", **{L_DIGEST: digest, L_PORT: str(port)}),
            "detach": True,
            "restart_policy": {"Name": "unless-stopped"},
        }
        if self.host_network:
            kwargs["network_mode"] = "host"
        else:
            kwargs["network"] = self.spec.network
        try:
            c = self.client.containers.run(image, **kwargs)
        except Exception as e:
            raise DeployError(f"could not start {image}: {short_error(e)}; nothing was switched") from None
        info(f"started {name} ({image}) on port {port}")
        if self.host_network:
            return ReleaseContainer(c.id, name, digest, "127.0.0.1", port, True)
        c.reload()
        return ReleaseContainer(c.id, name, digest, address_on(c, self.spec.network), port, True)

    def container(self, rc: ReleaseContainer) -> Any:
        return self.client.containers.get(rc.id)

    def alive(self, rc: ReleaseContainer) -> bool:
        try:
            c = self.container(rc)
            return bool(c.status in ("created", "running"))
        except Exception:
            return False

    def http(
        self, rc: ReleaseContainer, method: str, path: str, body: bytes | None = None
    ) -> tuple[int, bytes]:
        """One request to a release container, from where it can be reached."""
        if self.local:  # a bridge network's addresses are reachable from the engine's own machine
            return http_direct(f"http://{rc.address}:{rc.port}{path}", method, body)
        url = f"http://127.0.0.1:{rc.port}{path}"
        try:
            res = self.container(rc).exec_run(["python3", "-c", PROBE, url, method], stdin=False, demux=False)
        except Exception as e:
            raise OSError(f"probe failed: {short_error(e)}") from None
        out = res.output or b""
        head, _, rest = out.partition(b"\n")
        try:
            return int(head), rest
        except ValueError:
            raise OSError(f"probe failed: {out[:200]!r}") from None

    def stop(self, rc: ReleaseContainer, timeout: int = 10) -> None:
        with contextlib.suppress(Exception):  # already gone
            c = self.container(rc)
            c.stop(timeout=timeout)
            c.remove(force=True)

    def logs(self, rc: ReleaseContainer) -> str:
        try:
            return logs_of(self.container(rc))
        except Exception:
            return "(no logs: the container is gone)"

    def remove_all(self) -> int:
        n = 0
        for role in ("release", "proxy"):
            for c in self._containers(role):
                with contextlib.suppress(Exception):
                    c.remove(force=True)
                    n += 1
        return n


def _config_hash(image: str, bind: str, port: int, network: str) -> str:
    return hashlib.sha256(json.dumps([image, bind, port, network]).encode()).hexdigest()[:16]
