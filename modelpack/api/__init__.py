"""The library front: every verb of the `modelpack` command, as a function.

Each verb takes plain values plus injected collaborators (a `Targets`, which resolves names and owns the
registry clients; a progress callback; a clock where time matters), returns a frozen result with
`to_json()` (the exact shape `--json` prints), and never prints. The CLI is parse, one call here, render;
a script does the same:

    from modelpack import api

    with api.Targets() as targets:
        built = api.build(targets, "examples/iris-onnx")
        pushed = api.push(targets, "127.0.0.1:5000/acme/iris", source=built.tag)
        print(pushed.to_json()["digest"])
        print(api.ls(targets, "127.0.0.1:5000/acme/iris").tags)

Names follow one rule (modelpack/targets.py): `HOST/REPO[:TAG]` is a registry, `oci:PATH[:TAG]` a layout
directory, a bare `NAME[:TAG]` a repository of the local store.

The verbs' modules are imported on first use, so `import modelpack.api` costs nothing and a command pays
only for what it runs.
"""

from __future__ import annotations

import builtins
import importlib
from functools import cache
from typing import TYPE_CHECKING, Any

# The one table of the api's names: each line says where a name lives, for type checkers as written and,
# read from this file's source on first use (`_table`), for the lazy lookup and `__all__` at runtime.
if TYPE_CHECKING:
    from modelpack.api._build import BuildResult as BuildResult
    from modelpack.api._build import build as build
    from modelpack.api._build import find_packfile as find_packfile
    from modelpack.api._catalog import CatalogResult as CatalogResult
    from modelpack.api._catalog import DigestCache as DigestCache
    from modelpack.api._catalog import ReportResult as ReportResult
    from modelpack.api._catalog import catalog as catalog
    from modelpack.api._catalog import evidence as evidence
    from modelpack.api._catalog import report as report
    from modelpack.api._curves import CurvesResult as CurvesResult
    from modelpack.api._curves import training_curves as training_curves
    from modelpack.api._datasets import DatasetDiffResult as DatasetDiffResult
    from modelpack.api._datasets import DatasetInspectResult as DatasetInspectResult
    from modelpack.api._datasets import DatasetLsResult as DatasetLsResult
    from modelpack.api._datasets import DatasetPullResult as DatasetPullResult
    from modelpack.api._datasets import DatasetPushResult as DatasetPushResult
    from modelpack.api._datasets import DatasetUsedByResult as DatasetUsedByResult
    from modelpack.api._datasets import dataset_diff as dataset_diff
    from modelpack.api._datasets import dataset_inspect as dataset_inspect
    from modelpack.api._datasets import dataset_ls as dataset_ls
    from modelpack.api._datasets import dataset_pull as dataset_pull
    from modelpack.api._datasets import dataset_push as dataset_push
    from modelpack.api._datasets import dataset_used_by as dataset_used_by
    from modelpack.api._deploy import DeployResult as DeployResult
    from modelpack.api._deploy import EnvResult as EnvResult
    from modelpack.api._deploy import deploy as deploy
    from modelpack.api._deploy import env_set as env_set
    from modelpack.api._deploy import env_show as env_show
    from modelpack.api._deploy import undeploy as undeploy
    from modelpack.api._environments import HistoryResult as HistoryResult
    from modelpack.api._environments import LabelResult as LabelResult
    from modelpack.api._environments import NamingResult as NamingResult
    from modelpack.api._environments import PolicyResult as PolicyResult
    from modelpack.api._environments import archive as archive
    from modelpack.api._environments import history as history
    from modelpack.api._environments import naming as naming
    from modelpack.api._environments import policy_set as policy_set
    from modelpack.api._environments import policy_show as policy_show
    from modelpack.api._environments import promote as promote
    from modelpack.api._environments import rollback as rollback
    from modelpack.api._kubernetes import KubernetesResult as KubernetesResult
    from modelpack.api._kubernetes import kubernetes_manifests as kubernetes_manifests
    from modelpack.api._read import DiffResult as DiffResult
    from modelpack.api._read import InspectResult as InspectResult
    from modelpack.api._read import ListResult as ListResult
    from modelpack.api._read import LsResult as LsResult
    from modelpack.api._read import diff as diff
    from modelpack.api._read import inspect as inspect
    from modelpack.api._read import list_store as list
    from modelpack.api._read import ls as ls
    from modelpack.api._retention import PruneResult as PruneResult
    from modelpack.api._retention import prune as prune
    from modelpack.api._runs import RunResult as RunResult
    from modelpack.api._runs import RunsDiffResult as RunsDiffResult
    from modelpack.api._runs import RunShowResult as RunShowResult
    from modelpack.api._runs import RunsImportResult as RunsImportResult
    from modelpack.api._runs import RunsLsResult as RunsLsResult
    from modelpack.api._runs import RunsPruneResult as RunsPruneResult
    from modelpack.api._runs import RunsPushResult as RunsPushResult
    from modelpack.api._runs import run_command as run_command
    from modelpack.api._runs import runs_diff as runs_diff
    from modelpack.api._runs import runs_import as runs_import
    from modelpack.api._runs import runs_ls as runs_ls
    from modelpack.api._runs import runs_prune as runs_prune
    from modelpack.api._runs import runs_push as runs_push
    from modelpack.api._runs import runs_show as runs_show
    from modelpack.api._store import gc as gc
    from modelpack.api._store import init as init
    from modelpack.api._store import login as login
    from modelpack.api._store import logout as logout
    from modelpack.api._testing import TestOptions as TestOptions
    from modelpack.api._testing import serve as serve
    from modelpack.api._testing import test as test
    from modelpack.api._transfer import PullResult as PullResult
    from modelpack.api._transfer import TagResult as TagResult
    from modelpack.api._transfer import TransferResult as TransferResult
    from modelpack.api._transfer import copy as copy
    from modelpack.api._transfer import pull as pull
    from modelpack.api._transfer import push as push
    from modelpack.api._transfer import tag as tag
    from modelpack.api._transfer import unpack as unpack
    from modelpack.api._trust import KeygenResult as KeygenResult
    from modelpack.api._trust import SignResult as SignResult
    from modelpack.api._trust import VerifyResult as VerifyResult
    from modelpack.api._trust import keygen as keygen
    from modelpack.api._trust import sign as sign
    from modelpack.api._trust import verify as verify
    from modelpack.targets import Targets as Targets
    from modelpack.targets import TlsOptions as TlsOptions

    # `list` is re-exported under another name, which mypy wants named; at runtime __getattr__ answers
    # `__all__` with every name of this block.
    __all__ = ["list"]


@cache
def _table() -> dict[str, tuple[str, str]]:
    """name -> (module, attribute), from the TYPE_CHECKING block above (parsed once, when first needed)."""
    import ast

    with open(__file__, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    block = next(n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING")
    return {
        alias.asname or alias.name: (node.module, alias.name)
        for node in block.body
        if isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names
    }


def __getattr__(name: str) -> Any:
    if name == "__all__":
        return sorted(_table())
    home = _table().get(name)
    if home is None:
        raise AttributeError(f"module 'modelpack.api' has no attribute {name!r}")
    module, attribute = home
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> builtins.list[str]:
    return sorted({*globals(), *_table()})
