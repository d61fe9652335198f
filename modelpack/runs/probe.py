"""What a run records of where it ran: the host, its GPUs, allowed environment variables, installed packages.

GPUs are asked of NVML (nvidia-ml-py) first, then `nvidia-smi`; when neither answers, the run records no
GPU and the reason each probe gave, never a guess. Environment variables pass an allow-list (names and
prefixes that shape training: threads, devices, seeds, CI identity), and a name that looks like a secret is
dropped even when allowed; values are never scanned into the record otherwise.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from modelpack.runs.record import Gpu, Host

# Exact names, and prefixes ending in "_", whose values describe how training ran.
ALLOWED_ENV = (
    "CUDA_VISIBLE_DEVICES",
    "CUDA_DEVICE_ORDER",
    "CUBLAS_WORKSPACE_CONFIG",
    "NVIDIA_VISIBLE_DEVICES",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "PYTHONHASHSEED",
    "TF_DETERMINISTIC_OPS",
    "TF_CPP_MIN_LOG_LEVEL",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "TOKENIZERS_PARALLELISM",
    "WORLD_SIZE",
    "RANK",
    "LOCAL_RANK",
    "MASTER_PORT",
    "CI",
    "GITHUB_SHA",
    "GITHUB_REF",
    "GITHUB_RUN_ID",
    "GITHUB_WORKFLOW",
    "GITLAB_CI",
    "CI_JOB_ID",
    "CI_COMMIT_SHA",
    "SLURM_JOB_ID",
    "SLURM_JOB_NAME",
    "SLURM_NTASKS",
    "NCCL_",
    "TORCH_",
    "PYTORCH_",
    "XLA_FLAGS",
    "JAX_",
)
# A name with any of these words is never recorded, whatever the allow-list says.
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW|CREDENTIAL|AUTH|API_?KEY|PRIVATE|COOKIE|SESSION|_KEY$|^KEY")


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name.upper()))


def allowed_env(environ: Mapping[str, str], extra: Iterable[str] = ()) -> dict[str, str]:
    """The variables of `environ` on the allow-list (plus `extra` names or prefixes), secrets left out."""
    allowed = (*ALLOWED_ENV, *extra)
    out: dict[str, str] = {}
    for name, value in environ.items():
        if is_secret_name(name):
            continue
        if any(name == a or (a.endswith("_") and name.startswith(a)) for a in allowed):
            out[name] = value
    return out


def packages() -> dict[str, str]:
    """Every distribution importable here, by normalized name (PEP 503) -> version."""
    out: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            out[re.sub(r"[-_.]+", "-", name).lower()] = dist.version
    return dict(sorted(out.items()))


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip() in ("model name", "Model", "Hardware"):
                return value.strip() or None
    except OSError:
        pass
    return platform.processor() or None


Runner = Callable[[list[str]], "str | None"]


def run_command(argv: list[str]) -> str | None:
    if shutil.which(argv[0]) is None:
        return None
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def gpus_nvml() -> tuple[tuple[Gpu, ...] | None, str]:
    """(GPUs, how) from NVML; None when NVML is unusable here (no library, no driver)."""
    try:
        import pynvml
    except ImportError:
        return None, "nvml: nvidia-ml-py not installed"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        return None, f"nvml: {e}"
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        cuda_raw = pynvml.nvmlSystemGetCudaDriverVersion_v2()
        cuda = f"{cuda_raw // 1000}.{cuda_raw % 1000 // 10}"
        found = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            found.append(Gpu(_text(pynvml.nvmlDeviceGetName(h)), int(mem.total), driver, cuda))
        return tuple(found), f"nvml: {len(found)} device(s)"
    except pynvml.NVMLError as e:
        return None, f"nvml: {e}"
    finally:
        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()


def gpus_smi(run: Runner = run_command) -> tuple[tuple[Gpu, ...] | None, str]:
    out = run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader,nounits"])
    if out is None:
        return None, "nvidia-smi: not found or failed"
    header = run(["nvidia-smi"]) or ""
    cuda = m.group(1) if (m := re.search(r"CUDA Version:\s*([0-9.]+)", header)) else None
    found = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 3:
            mem = int(float(parts[1])) * 1024 * 1024 if parts[1].replace(".", "").isdigit() else None
            found.append(Gpu(parts[0], mem, parts[2] or None, cuda))
    return tuple(found), f"nvidia-smi: {len(found)} device(s)"


def probe_gpus(run: Runner = run_command) -> tuple[tuple[Gpu, ...], str]:
    """The GPUs and the probes' words: `()` with both reasons when there is none (recorded as absent)."""
    found, how = gpus_nvml()
    if found is not None:
        return found, how
    found_smi, how_smi = gpus_smi(run)
    return found_smi or (), f"{how}; {how_smi}"


def host(gpu_probe: Callable[[], tuple[tuple[Gpu, ...], str]] = probe_gpus) -> tuple[Host, list[str]]:
    """The host, and notes on what could not be read."""
    notes: list[str] = []
    memory: int | None = None
    try:
        import psutil

        memory = int(psutil.virtual_memory().total)
    except ImportError:
        notes.append("psutil is not installed: no memory total and no system samples")
    gpus, how = gpu_probe()
    uname = platform.uname()
    return (
        Host(
            hostname=socket.gethostname(),
            os=f"{uname.system} {uname.release} {uname.machine}",
            python=platform.python_version(),
            cpu_model=cpu_model(),
            cpu_count=os.cpu_count(),
            memory_bytes=memory,
            gpus=gpus,
            gpu_probe=how,
        ),
        notes,
    )


def command() -> tuple[str, ...]:
    """The command line of this process as it was typed (python's own argv)."""
    return (sys.executable, *sys.argv) if sys.argv and sys.argv[0] else (sys.executable,)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
