"""The garbage collection docs/retention.md gives, run for real after prune on distribution."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from fixtures.registry import RegistryProcess
from support.places import attach_report, make_release, runtime
from support.prune_repos import VERSIONS

from modelpack import api
from modelpack.errors import NotFoundError
from modelpack.evidence.evidence import passing_report, read_payload
from modelpack.oci.model import Index, parse
from modelpack.oci.target import Target
from modelpack.targets import Targets


def _whole(target: Target, tag: str) -> bool:
    """Every manifest and blob the tag reaches can be read back (verified against its digest)."""
    try:
        stack = [target.get_manifest(tag)]
        while stack:
            raw = stack.pop()
            doc = parse(raw.raw, raw.media_type)
            if isinstance(doc, Index):
                stack += [target.get_manifest(d.digest) for d in doc.manifests]
                continue
            for d in (doc.config, *doc.layers):
                with target.read_blob(d) as chunks:
                    b"".join(chunks)
    except NotFoundError:
        return False
    return True


def _blob_files(reg: RegistryProcess) -> int:
    return sum(1 for _ in (reg.storage / "docker/registry/v2/blobs").rglob("data"))


@pytest.mark.parametrize("untagged", [False, True])
def test_the_registry_gc_docs_retention_md_gives_frees_what_prune_deleted_and_keeps_the_rest(
    registry: RegistryProcess, tmp_path: Path, untagged: bool
) -> None:
    """docs/retention.md: after prune, distribution's `garbage-collect CONFIG` frees the pruned blobs and
    leaves every kept release, report and history event whole; `--delete-untagged` on distribution 2.8
    deletes the untagged children of every index, kept releases included (distribution#3178), which is
    why the docs say not to use it there. If this case starts failing, the registry fixed it: update
    the docs."""
    reg = RegistryProcess(root=tmp_path / "gc-registry", binary=registry.binary)
    reg.start()
    try:
        with Targets(store_path=tmp_path / "store", environ={}) as targets:
            ref = f"{reg.host}/acme/iris"
            target = targets.open(ref).target
            for v in VERSIONS[:5]:
                attach_report(target, make_release(target, v, v, weights=v.encode() * 1000))
            rt = runtime()
            for v in ("1.1.0", "1.2.0"):
                api.promote(targets, f"{ref}:{v}", "prod", runtime=rt)
            before = _blob_files(reg)
            assert sorted(api.prune(targets, ref, keep_last=1).deleted_versions) == ["1.0.0", "1.3.0"]
        reg.stop()
        flags = ["--delete-untagged"] if untagged else []
        gc = subprocess.run(
            [registry.binary, "garbage-collect", str(reg.config_path), *flags],
            capture_output=True,
            check=False,
        )
        assert gc.returncode == 0, gc.stderr[-2000:]
        after = _blob_files(reg)
        reg.start()
        with Targets(store_path=tmp_path / "store", environ={}) as targets:
            target = targets.open(ref).target
            kept = ["1.1.0", "1.2.0", "1.4.0", "prod"]
            if untagged:
                assert not any(_whole(target, t) for t in kept)  # distribution 2.8: every kept release broken
                return
            assert before - after == 12  # per pruned version: index, bundle, config, weights, report, payload
            assert all(_whole(target, t) for t in kept)
            for v in ("1.1.0", "1.2.0", "1.4.0"):
                report = passing_report(target, target.get_manifest(v).digest)
                assert report is not None and read_payload(target, report) == b'{"passed": true}'
            assert api.rollback(targets, ref, "prod", runtime=runtime()).event.version == "1.1.0"
    finally:
        reg.stop()
