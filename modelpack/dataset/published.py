"""A modelpack.yaml dataset `ref:` resolved for the build: the published artifact's digest and hash, and,
when the entry names a local `path` too, proof that the local copy is that content (else the first file
that differs, so the user knows what to re-pull or re-push)."""

from __future__ import annotations

from collections.abc import Iterable

from modelpack.bundle.datasets import HashFile, sha256_file
from modelpack.dataset.artifact import dataset_files
from modelpack.dataset.read import first_difference, load_dataset
from modelpack.errors import ContentError, InputError, NotFoundError
from modelpack.oci import digest as digests
from modelpack.packfile.schema import DatasetSpec
from modelpack.record.dataset import PublishedDataset
from modelpack.targets import Targets


def resolve_refs(
    targets: Targets, specs: Iterable[DatasetSpec], *, hash_file: HashFile = sha256_file
) -> dict[str, PublishedDataset]:
    out: dict[str, PublishedDataset] = {}
    for spec in specs:
        if spec.ref is not None:
            out[spec.name] = resolve_ref(targets, spec, hash_file=hash_file)
    return out


def resolve_ref(
    targets: Targets, spec: DatasetSpec, *, hash_file: HashFile = sha256_file
) -> PublishedDataset:
    assert spec.ref is not None
    where = f"dataset {spec.name!r}: ref {spec.ref}"
    try:
        place = targets.open(spec.ref)
        ref = place.need_ref("resolve")
        view = load_dataset(place.target, ref, where=spec.ref, full=spec.path is not None)
    except NotFoundError as e:
        raise InputError(
            f"{where} does not exist ({e.message})", hint="push it first: modelpack dataset push"
        ) from None
    except ContentError as e:
        raise InputError(f"{where}: {e.message}", hint=e.hint) from None
    record = view.record
    if spec.path is not None:
        kind, found = dataset_files(spec.path)
        local = [(rel, hash_file(path)[0]) for rel, path in found]
        if kind == "file" and record.kind == "file":
            same = local[0][1] == record.sha256
        else:
            listing = "".join(f"{digests.hex_part(d)}  {rel}\n" for rel, d in local)
            same = kind == record.kind and digests.of_bytes(listing.encode()) == record.sha256
        if not same:
            first = first_difference(record, local) if kind == record.kind == "directory" else spec.path_text
            raise InputError(
                f"dataset {spec.name!r}: {spec.path_text} is not the published {spec.ref} "
                f"({view.digest[:19]}): {first}",
                hint="pull the published one (modelpack dataset pull), or push yours as a new version",
            )
    return PublishedDataset(spec.ref, view.digest, record.sha256, record.size, record.count)
