"""The library front: every verb of the `modelpack` command, as a function.

Each verb takes plain values plus injected collaborators (a `Targets`, which resolves names and owns the
registry clients; a progress callback; a clock where time matters), returns a frozen result with
`to_json()` (the exact shape `--json` prints), and never prints. The CLI is parse, one call here, render;
a script does the same:

    from modelpack import api

    with api.Targets() as targets:
        built = api.build("examples/iris-onnx", targets, image=False)
        pushed = api.push(targets, "127.0.0.1:5000/acme/iris:1.0.0", source=built.tag)
        print(pushed.to_json())
        print(api.history(targets, "127.0.0.1:5000/acme/iris", "prod").to_json())

Names follow one rule (modelpack/targets.py): `HOST/REPO[:TAG]` is a registry, `oci:PATH[:TAG]` a layout
directory, a bare `NAME[:TAG]` a repository of the local store.

The verbs' modules are imported on first use, so `import modelpack.api` costs nothing and a command pays
only for what it runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# verb or type -> the module that defines it
_HOME = {
    "build": "_build",
    "BuildResult": "_build",
    "find_packfile": "_build",
    "push": "_transfer",
    "pull": "_transfer",
    "copy": "_transfer",
    "tag": "_transfer",
    "unpack": "_transfer",
    "TransferResult": "_transfer",
    "PullResult": "_transfer",
    "TagResult": "_transfer",
    "inspect": "_read",
    "diff": "_read",
    "ls": "_read",
    "list": "_read",
    "InspectResult": "_read",
    "DiffResult": "_read",
    "LsResult": "_read",
    "ListResult": "_read",
    "training_curves": "_curves",
    "CurvesResult": "_curves",
    "catalog": "_catalog",
    "evidence": "_catalog",
    "report": "_catalog",
    "CatalogResult": "_catalog",
    "DigestCache": "_catalog",
    "ReportResult": "_catalog",
    "promote": "_environments",
    "rollback": "_environments",
    "history": "_environments",
    "HistoryResult": "_environments",
    "policy_set": "_environments",
    "policy_show": "_environments",
    "PolicyResult": "_environments",
    "prune": "_retention",
    "PruneResult": "_retention",
    "test": "_testing",
    "TestOptions": "_testing",
    "serve": "_testing",
    "dataset_push": "_datasets",
    "dataset_pull": "_datasets",
    "dataset_inspect": "_datasets",
    "dataset_ls": "_datasets",
    "dataset_diff": "_datasets",
    "dataset_used_by": "_datasets",
    "DatasetPushResult": "_datasets",
    "DatasetPullResult": "_datasets",
    "DatasetInspectResult": "_datasets",
    "DatasetLsResult": "_datasets",
    "DatasetDiffResult": "_datasets",
    "DatasetUsedByResult": "_datasets",
    "gc": "_store",
    "login": "_store",
    "logout": "_store",
    "init": "_store",
    "keygen": "_trust",
    "sign": "_trust",
    "verify": "_trust",
    "KeygenResult": "_trust",
    "SignResult": "_trust",
    "VerifyResult": "_trust",
    "Targets": "modelpack.targets",
    "TlsOptions": "modelpack.targets",
}
__all__ = [
    "BuildResult",
    "CatalogResult",
    "CurvesResult",
    "DatasetDiffResult",
    "DatasetInspectResult",
    "DatasetLsResult",
    "DatasetPullResult",
    "DatasetPushResult",
    "DatasetUsedByResult",
    "DiffResult",
    "DigestCache",
    "HistoryResult",
    "InspectResult",
    "KeygenResult",
    "ListResult",
    "LsResult",
    "PolicyResult",
    "PruneResult",
    "PullResult",
    "ReportResult",
    "SignResult",
    "TagResult",
    "Targets",
    "TestOptions",
    "TlsOptions",
    "TransferResult",
    "VerifyResult",
    "build",
    "catalog",
    "copy",
    "dataset_diff",
    "dataset_inspect",
    "dataset_ls",
    "dataset_pull",
    "dataset_push",
    "dataset_used_by",
    "diff",
    "evidence",
    "find_packfile",
    "gc",
    "history",
    "init",
    "inspect",
    "keygen",
    "list",
    "login",
    "logout",
    "ls",
    "policy_set",
    "policy_show",
    "promote",
    "prune",
    "pull",
    "push",
    "report",
    "rollback",
    "serve",
    "sign",
    "tag",
    "test",
    "training_curves",
    "unpack",
    "verify",
]

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
    from modelpack.api._environments import HistoryResult as HistoryResult
    from modelpack.api._environments import PolicyResult as PolicyResult
    from modelpack.api._environments import history as history
    from modelpack.api._environments import policy_set as policy_set
    from modelpack.api._environments import policy_show as policy_show
    from modelpack.api._environments import promote as promote
    from modelpack.api._environments import rollback as rollback
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


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'modelpack.api' has no attribute {name!r}")
    module = importlib.import_module(home if "." in home else f"modelpack.api.{home}")
    value = getattr(module, "list_store" if name == "list" else name)
    globals()[name] = value
    return value
