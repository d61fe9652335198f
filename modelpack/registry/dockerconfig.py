"""docker's config.json: read and write credentials exactly where and how docker keeps them.

Lookup order per host is docker's: a `credHelpers` entry for the host, else `credsStore`, else the
`auths` entry (base64 `auth` or username/password, `identitytoken`). Helpers are the external
`docker-credential-<name>` programs, run through an injected runner so tests need no real helper.
A helper name is a plain name and the program is looked up on PATH only, never relative to the working
directory (as Go's exec.LookPath does since 1.19): a config.json naming `../x` cannot run a file of the
project being built.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelpack.errors import AuthError, InputError
from modelpack.registry.reference import auth_key_for

# Username docker's helpers and config use to mean "the secret is an identity (refresh) token".
TOKEN_USERNAME = "<token>"


@dataclass(frozen=True)
class Credential:
    """What to authenticate with. Secrets are masked in repr/str so a stray log line leaks nothing."""

    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)

    def __repr__(self) -> str:
        secret = "***" if (self.password or self.identity_token) else ""
        kind = "identity_token" if self.identity_token else "password"
        return f"Credential(username={self.username!r}, {kind}={secret!r})"

    __str__ = __repr__

    @property
    def is_empty(self) -> bool:
        return not (self.username or self.password or self.identity_token)


# argv, stdin -> (exit code, stdout, stderr); the shell's codes for a program that cannot be run.
Runner = Callable[[Sequence[str], bytes], tuple[int, bytes, bytes]]
NOT_FOUND, CANNOT_RUN, TIMED_OUT = 127, 126, 124
# A helper may wait for a keychain to be unlocked, but a hung one must not hang a push.
HELPER_TIMEOUT = 60.0
_HELPER_NAME = re.compile(r"[A-Za-z0-9._-]+")


def find_on_path(program: str, path: str | None = None) -> tuple[str | None, str | None]:
    """(the executable `program` in an absolute PATH folder, else a non-executable file of that name).
    Relative PATH entries (`.`, or an empty one) would mean the working directory: skipped."""
    unusable = None
    folders = (os.environ.get("PATH", os.defpath) if path is None else path).split(os.pathsep)
    for folder in folders:
        if not os.path.isabs(folder):
            continue
        candidate = os.path.join(folder, program)
        if os.path.isfile(candidate):
            if os.access(candidate, os.X_OK):
                return candidate, None
            unusable = unusable or candidate
    return None, unusable


def subprocess_runner(
    argv: Sequence[str], stdin: bytes, *, timeout: float = HELPER_TIMEOUT
) -> tuple[int, bytes, bytes]:
    program = argv[0]
    found, unusable = (None, None) if os.sep in program else find_on_path(program)
    if found is None:
        if unusable:
            return CANNOT_RUN, b"", f"{unusable} is not executable".encode()
        return NOT_FOUND, b"", f"{program}: not found on PATH".encode()
    try:
        done = subprocess.run(
            [found, *argv[1:]], input=stdin, capture_output=True, check=False, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return TIMED_OUT, b"", f"{program} did not answer within {timeout:g} s".encode()
    except OSError as e:  # not a program this system can run (no shebang, wrong architecture)
        return CANNOT_RUN, b"", f"{found} cannot be run: {e.strerror or e}".encode()
    return done.returncode, done.stdout, done.stderr


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    configured = env.get("DOCKER_CONFIG")
    return Path(configured) if configured else Path(env.get("HOME", str(Path.home()))) / ".docker"


def _normalize(key: str) -> str:
    """`https://host/v1/` -> `host`, as docker's ConvertToHostname does; Docker Hub maps to its legacy key."""
    stripped = key.split("://", 1)[1] if "://" in key else key
    return auth_key_for(stripped.split("/", 1)[0])


@dataclass(frozen=True)
class DockerConfig:
    """One config.json, read once. `data` is the whole JSON, kept so a write preserves other keys."""

    path: Path
    data: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, directory: Path | None = None) -> DockerConfig:
        path = (directory if directory is not None else config_dir()) / "config.json"
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls(path=path)
        except OSError as e:
            raise InputError(f"cannot read {path}: {e.strerror}") from None
        try:
            data = json.loads(text) if text.strip() else {}
        except ValueError:
            raise InputError(
                f"{path} is not valid JSON", hint="fix or remove it, then log in again"
            ) from None
        if not isinstance(data, dict):
            raise InputError(f"{path} is not a JSON object")
        return cls(path=path, data=data)

    def helper_for(self, registry: str) -> str | None:
        key = auth_key_for(registry)
        helpers = self.data.get("credHelpers") or {}
        found: str | None = None
        if isinstance(helpers, dict):
            found = next(
                (
                    v
                    for k, v in helpers.items()
                    if isinstance(v, str) and v and (k == key or _normalize(k) == _normalize(key))
                ),
                None,
            )
        if found is None:
            store = self.data.get("credsStore")
            found = store if isinstance(store, str) and store else None
        if found is not None and not _HELPER_NAME.fullmatch(found):
            raise InputError(
                f"{self.path}: credential helper {found!r} for {registry} is not a plain name; not run",
                hint="credsStore and credHelpers name a program docker-credential-<name> on PATH: "
                "use only letters, digits, '.', '_' and '-'",
            )
        return found

    def file_credential(self, registry: str) -> Credential | None:
        key = auth_key_for(registry)
        auths = self.data.get("auths") or {}
        if not isinstance(auths, dict):
            return None
        entry = auths.get(key)
        if entry is None:
            entry = next((v for k, v in auths.items() if _normalize(k) == _normalize(key)), None)
        if not isinstance(entry, dict):
            return None
        username, password = str(entry.get("username") or ""), str(entry.get("password") or "")
        encoded = entry.get("auth")
        if isinstance(encoded, str) and encoded:
            try:
                username, _, password = base64.b64decode(encoded).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                raise InputError(f"{self.path}: the auth entry for {registry} is not valid base64") from None
        token = str(entry.get("identitytoken") or "")
        cred = Credential(username=username, password=password, identity_token=token)
        return None if cred.is_empty else cred

    def credential(self, registry: str, runner: Runner = subprocess_runner) -> Credential | None:
        helper = self.helper_for(registry)
        if helper:
            found = helper_get(helper, auth_key_for(registry), runner)
            if found is not None:
                return found
        return self.file_credential(registry)

    def store(self, registry: str, cred: Credential, runner: Runner = subprocess_runner) -> None:
        """Save `cred` as docker would: through the helper when one is configured, else in `auths`."""
        key = auth_key_for(registry)
        data = json.loads(json.dumps(self.data))  # a deep, mutable copy
        auths = data.setdefault("auths", {})
        helper = self.helper_for(registry)
        if helper:
            helper_store(helper, key, cred, runner)
            auths[key] = {}
        elif cred.identity_token:
            auths[key] = {"auth": _b64(f"{cred.username}:"), "identitytoken": cred.identity_token}
        else:
            auths[key] = {"auth": _b64(f"{cred.username}:{cred.password}")}
        _write_atomic(self.path, json.dumps(data, indent="\t").encode() + b"\n")

    def remove(self, registry: str, runner: Runner = subprocess_runner) -> bool:
        """Forget `registry` as `docker logout` does: erase the helper's copy and drop the `auths` entry
        (under any spelling of the host). Returns whether anything was stored."""
        key = auth_key_for(registry)
        erased = False
        helper = self.helper_for(registry)
        if helper:
            erased = helper_erase(helper, key, runner)
        data = json.loads(json.dumps(self.data))
        auths = data.get("auths")
        found = (
            [k for k in auths if k == key or _normalize(k) == _normalize(key)]
            if isinstance(auths, dict)
            else []
        )
        for k in found:
            del auths[k]
        if found:
            _write_atomic(self.path, json.dumps(data, indent="\t").encode() + b"\n")
        return erased or bool(found)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _write_atomic(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=".config.json.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def helper_get(helper: str, server: str, runner: Runner) -> Credential | None:
    program = f"docker-credential-{helper}"
    code, out, err = runner([program, "get"], server.encode())
    if code != 0:
        message = err.decode(errors="replace").strip() or out.decode(errors="replace").strip()
        if "credentials not found" in message.lower():
            return None
        _unusable(program, server, code, err)
        raise AuthError(f"credential helper {program} failed for {server} (exit {code})")
    try:
        obj = json.loads(out)
        username, secret = str(obj.get("Username") or ""), str(obj.get("Secret") or "")
    except (ValueError, AttributeError):
        raise AuthError(f"credential helper {program} returned malformed output for {server}") from None
    if username == TOKEN_USERNAME:
        return Credential(identity_token=secret)
    cred = Credential(username=username, password=secret)
    return None if cred.is_empty else cred


def helper_store(helper: str, server: str, cred: Credential, runner: Runner) -> None:
    program = f"docker-credential-{helper}"
    if cred.identity_token:
        payload = {"ServerURL": server, "Username": TOKEN_USERNAME, "Secret": cred.identity_token}
    else:
        payload = {"ServerURL": server, "Username": cred.username, "Secret": cred.password}
    code, _, _ = runner([program, "store"], json.dumps(payload).encode())
    if code != 0:
        _unusable(program, server, code, b"")
        # stderr is not echoed: some helpers repeat their input, which holds the secret.
        raise AuthError(
            f"credential helper {program} could not store the credentials for {server} (exit {code})"
        )


def helper_erase(helper: str, server: str, runner: Runner) -> bool:
    """Returns False when the helper held nothing for `server`."""
    program = f"docker-credential-{helper}"
    code, out, err = runner([program, "erase"], server.encode())
    if code == 0:
        return True
    message = err.decode(errors="replace").strip() or out.decode(errors="replace").strip()
    if "credentials not found" in message.lower():
        return False
    _unusable(program, server, code, err)
    raise AuthError(f"credential helper {program} could not erase the credentials for {server} (exit {code})")


def _unusable(program: str, server: str, code: int, err: bytes) -> None:
    """Raise for a helper that could not be run at all. `err` is shown: pass b"" where the helper was
    handed a secret (some echo their input)."""
    hint = "install it, or remove it from credsStore/credHelpers in docker's config.json"
    if code == NOT_FOUND:
        raise AuthError(f"credential helper {program} for {server} is not installed", hint=hint)
    if code in (CANNOT_RUN, TIMED_OUT):
        reason = err.decode(errors="replace").strip().splitlines()[0][:300] if err.strip() else f"exit {code}"
        fix = "fix or reinstall it" if code == CANNOT_RUN else "check why it hangs (a locked keychain?)"
        raise AuthError(f"credential helper {program} for {server}: {reason}", hint=fix)


def credentials_from_docker(
    directory: Path | None = None, runner: Runner = subprocess_runner
) -> Callable[[str], Credential | None]:
    """A credential source for RegistryClient: reads config.json on first use, per registry."""
    loaded: list[DockerConfig] = []

    def source(registry: str) -> Credential | None:
        if not loaded:
            loaded.append(DockerConfig.load(directory))
        return loaded[0].credential(registry, runner)

    return source
