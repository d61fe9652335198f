"""Where the running modelpack came from, as the pip requirement a CI runner installs (`modelpack init`).

The generated workflow must install the modelpack that made it, from somewhere a GitHub runner reaches:
- installed from an index (PyPI): `modelpack-release==VERSION`;
- installed from git (`pip install git+URL@REV`; PEP 610's direct_url.json says so): that URL at the
  exact commit;
- an editable or local-directory install (a developer's checkout): the checkout's remote at its HEAD
  commit, when it has one; a local wheel or archive: nothing a runner can reach.
Where no reachable source is known the requirement is still written (`==VERSION`) and a note says why it
may not install and how to choose (`init --modelpack-from SPEC`: any pip requirement or URL).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlparse

from modelpack import __version__

DISTRIBUTION = "modelpack-release"  # the PyPI name of this package (`modelpack` is another project)


@dataclass(frozen=True)
class Source:
    requirement: str  # what `pip install` gets in the workflow
    note: str | None = None  # why it may not install on a runner, and what to do


def running(
    read_direct_url: Callable[[], str | None] | None = None,
    git: Callable[[Path, list[str]], str | None] | None = None,
) -> Source:
    """The requirement for the running modelpack (the readers are injected for tests)."""
    pinned = f"{DISTRIBUTION}=={__version__}"
    raw = (read_direct_url or _direct_url)()
    if not raw:
        return Source(pinned)  # from an index
    try:
        info = json.loads(raw)
    except json.JSONDecodeError:
        return Source(pinned)
    url = str(info.get("url", ""))
    vcs = info.get("vcs_info")
    if isinstance(vcs, dict) and vcs.get("vcs") == "git" and vcs.get("commit_id"):
        return Source(f"{DISTRIBUTION} @ git+{url}@{vcs['commit_id']}")
    parsed = urlparse(url)
    if parsed.scheme in ("http", "https"):
        return Source(f"{DISTRIBUTION} @ {url}")  # a wheel or archive on a server: runners reach it too
    path = Path(unquote(parsed.path)) if parsed.scheme == "file" else None
    if path is not None and path.is_dir():
        remote = (git or _git)(path, ["config", "--get", "remote.origin.url"])
        commit = (git or _git)(path, ["rev-parse", "HEAD"])
        if remote and commit and not remote.startswith(("/", "file:", ".")):
            https = _as_https(remote)
            return Source(
                f"{DISTRIBUTION} @ git+{https}@{commit}",
                note=f"the workflow installs modelpack from {https} at {commit[:12]} (this checkout's "
                "remote and commit): push that commit, or choose with --modelpack-from",
            )
    where = url or "a local file"
    return Source(
        pinned,
        note=f"this modelpack was installed from {where}, which a CI runner cannot reach: the workflow "
        f"installs {pinned}; if that is not published, pass --modelpack-from (a PyPI version, "
        "git+URL@COMMIT or a wheel URL)",
    )


def chosen(spec: str) -> Source:
    """`--modelpack-from SPEC`: a version (`1.4.0`), a requirement, or a git/wheel URL."""
    text = spec.strip()
    if not text:
        return running()
    if text[0].isdigit():
        return Source(f"{DISTRIBUTION}=={text}")
    if text.startswith(("git+", "http://", "https://")):
        return Source(f"{DISTRIBUTION} @ {text}")
    return Source(text)


def _direct_url() -> str | None:
    try:
        return metadata.distribution(DISTRIBUTION).read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return None


def _git(cwd: Path, args: list[str]) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    out = done.stdout.strip()
    return out if done.returncode == 0 and out else None


def _as_https(remote: str) -> str:
    """`git@github.com:acme/x.git` -> `https://github.com/acme/x.git` (runners have no SSH key); userinfo
    is dropped so no credential lands in a workflow file."""
    if remote.startswith("git@") and ":" in remote:
        host, path = remote[4:].split(":", 1)
        return f"https://{host}/{path}"
    parsed = urlparse(remote)
    if parsed.scheme in ("http", "https", "ssh") and parsed.hostname:
        port = f":{parsed.port}" if parsed.port else ""
        return f"https://{parsed.hostname}{port}{parsed.path}"
    return remote
