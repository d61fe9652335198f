"""`--apply`: the one kubectl command line, run with a runner the caller injects (a real subprocess in the
CLI). modelpack holds no cluster credentials of its own: kubectl reads the user's kubeconfig."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from modelpack.errors import ModelpackError, UsageError

_CONTEXT = re.compile(r"^[A-Za-z0-9@:._/-]{1,253}$")
TIMEOUT_S = 300.0


class ApplyError(ModelpackError):
    """kubectl ran and refused or failed (no cluster, no access, an invalid object)."""


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: str
    stderr: str


Runner = Callable[[Sequence[str], float], Completed]


def command(kubectl: str, overlay: Path, context: str | None) -> list[str]:
    """`kubectl [--context NAME] apply -k OVERLAY`: server-side apply, so a field another manager owns
    (an HPA's replicas, a mesh's injected sidecar) is a conflict to see, not a silent overwrite."""
    args = [kubectl]
    if context is not None:
        if not _CONTEXT.match(context):
            raise UsageError(f"--context {context!r} is not a kubeconfig context name")
        args += ["--context", context]
    return [*args, "apply", "--server-side", "--field-manager=modelpack", "-k", str(overlay)]


def find_kubectl(which: Callable[[str], str | None] = shutil.which) -> str:
    found = which("kubectl")
    if found is None:
        raise UsageError(
            "--apply runs kubectl, and there is no kubectl on PATH",
            hint="install kubectl, or leave out --apply and let a GitOps tool apply the directory",
        )
    return found


def apply(runner: Runner, args: Sequence[str]) -> str:
    """Runs `args`; kubectl's own last error line on failure (it names the server or the object)."""
    done = runner(args, TIMEOUT_S)
    if done.returncode != 0:
        lines = [ln.strip() for ln in done.stderr.splitlines() if ln.strip()]
        last = lines[-1].removeprefix("error: ") if lines else f"exit status {done.returncode}"
        raise ApplyError(
            f"kubectl apply failed: {last}",
            hint="the manifests are written; kubectl's output says what it applied, if anything",
        )
    return done.stdout
