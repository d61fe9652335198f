"""`inspect`, `diff`, `ls` and `list`: reading releases from manifests alone (no blob is pulled)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelpack.environment.place import Place, environments
from modelpack.errors import UsageError
from modelpack.release.diff import RecordDiff, diff_records
from modelpack.release.view import ReleaseView, load_release
from modelpack.store.storerepo import store_repositories
from modelpack.targets import Location, Targets

if TYPE_CHECKING:
    from modelpack.evidence.attestations import Listed as AttestationListed
    from modelpack.evidence.signatures import Listed
    from modelpack.oci.model import Descriptor
    from modelpack.record.where import Condition
    from modelpack.release import query

_BARE_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class ReportInfo:
    digest: str
    passed: bool
    runtime: str
    created: str

    def to_json(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "passed": self.passed,
            "runtime": self.runtime,
            "created": self.created,
        }


@dataclass(frozen=True)
class InspectResult:
    reference: str
    release: ReleaseView
    where: str  # "registry", "layout" or "store": where it was read from
    image_size: int | None = None  # the serving image's manifest, config and layers (base included)
    reports: tuple[ReportInfo, ...] = ()  # attached test reports, newest first
    environments: tuple[str, ...] = ()  # environment tags that name this release now
    signatures: tuple[Listed, ...] = ()  # release and model signatures attached (listed, not verified)
    attestations: tuple[AttestationListed, ...] = ()  # test evidence, provenance, SBOM (listed, not verified)

    def to_json(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "readFrom": self.where,
            **self.release.to_json(),
            "imageSize": self.image_size,
            "reports": [r.to_json() for r in self.reports],
            "environments": list(self.environments),
            "signatures": [s.to_json() for s in self.signatures],
            "attestations": [a.to_json() for a in self.attestations],
        }


@dataclass(frozen=True)
class DiffResult:
    a: str
    b: str
    diff: RecordDiff

    def to_json(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, **self.diff.to_json()}


@dataclass(frozen=True)
class LsResult:
    repository: str
    tags: tuple[str, ...]  # release tags, in the order shown (versions in version order, then the rest)
    versions: tuple[query.Version, ...]  # with records, when they were read (sort, where, json)
    sort: str | None = None
    environments: frozenset[str] = frozenset()  # tags with promotion history
    notes: tuple[str, ...] = ()  # how --where was read (a name taken as a param, versions a name spans)
    columns: tuple[str, ...] = ()  # the params `ls --columns` shows

    def to_json(self) -> dict[str, Any]:
        return {
            "repository": self.repository,
            "notes": list(self.notes),
            "versions": [_version_json(v, v.tag in self.environments) for v in self.versions],
        }


@dataclass(frozen=True)
class StoreEntry:
    repository: str
    tag: str
    digest: str
    media_type: str
    artifact_type: str | None

    @property
    def name(self) -> str:
        return f"{self.repository}:{self.tag}"

    @property
    def kind(self) -> str:
        from modelpack.oci import mediatypes as mt

        if self.artifact_type == mt.DATASET_ARTIFACT:
            return "dataset"
        return "bundle" if self.artifact_type else "release"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "repository": self.repository,
            "tag": self.tag,
            "digest": self.digest,
            "mediaType": self.media_type,
            "artifactType": self.artifact_type,
            "kind": self.kind,
        }


@dataclass(frozen=True)
class ListResult:
    store: str
    entries: tuple[StoreEntry, ...]

    def to_json(self) -> dict[str, Any]:
        return {"store": self.store, "releases": [e.to_json() for e in self.entries]}


def _release(targets: Targets, text: str, local: bool) -> tuple[Location, str]:
    where = targets.open(text, local=local)
    return where, where.need_ref("read")


def inspect(targets: Targets, reference: str, *, local: bool = False) -> InspectResult:
    """A release's record, layers and sizes; `local` reads the store's copy of a pulled release."""
    from concurrent.futures import ThreadPoolExecutor

    from modelpack.evidence import attestations, signatures

    where, ref = _release(targets, reference, local)
    with targets.pulled_copy_hint(reference, local=local):
        view = load_release(where.target, ref, where=where.display)
    # three independent reads at once (latency, not bytes), so at most three connections; the evidence is
    # one listing of the index's referrers (reports, signatures, attestations), plus the bundle's, where
    # the model signature hangs
    with ThreadPoolExecutor(max_workers=3) as pool:
        size = pool.submit(_image_size, where, view)
        envs = pool.submit(_naming_environments, where, view.digest)
        referring = pool.submit(_referrers, where, view)
        on_index, on_bundle = referring.result()
        return InspectResult(
            where.display,
            view,
            where.kind,
            size.result(),
            _reports(on_index),
            envs.result(),
            signatures.classify([*on_index, *on_bundle]),
            attestations.classify(on_index),
        )


def _referrers(where: Location, view: ReleaseView) -> tuple[list[Descriptor], list[Descriptor]]:
    """The referrers of the release index and, when it is another manifest, of its bundle."""
    on_index = where.target.referrers(view.digest)
    on_bundle = where.target.referrers(view.bundle.digest) if view.bundle.digest != view.digest else []
    return on_index, on_bundle


def _image_size(where: Location, view: ReleaseView) -> int | None:
    from modelpack.oci.model import Manifest, parse

    if view.image is None:
        return None
    raw = where.target.get_manifest(view.image.digest)
    doc = parse(raw.raw, raw.media_type)
    if not isinstance(doc, Manifest):
        return None
    return len(raw.raw) + doc.config.size + sum(d.size for d in doc.layers)


def _reports(referrers: Sequence[Descriptor]) -> tuple[ReportInfo, ...]:
    from modelpack.evidence import evidence

    found = [
        ReportInfo(
            d.digest,
            (d.annotations or {}).get(evidence.ANN_PASSED) == "true",
            evidence.runtime_of(d),
            (d.annotations or {}).get(evidence.ANN_CREATED) or "",
        )
        for d in referrers
        if d.artifact_type == evidence.REPORT_TYPE
    ]
    return tuple(sorted(found, key=lambda r: (r.created, r.digest), reverse=True))


def _naming_environments(where: Location, digest: str) -> tuple[str, ...]:
    """Environment tags (with promotion history) whose tag names `digest` now."""
    if where.kind == "layout":
        return ()
    return tuple(sorted(environments(Place.of(where), where.target.list_tags(), naming=digest)))


def sibling(a: Location, b_text: str) -> str:
    """`diff REPO:1.0 1.1`: a bare tag as B means that tag in A's repository."""
    if not _BARE_TAG.match(b_text):
        return b_text
    return a.ref_text(b_text)


def diff(targets: Targets, a: str, b: str, *, local: bool = False, better: Sequence[str] = ()) -> DiffResult:
    """What changed between two releases: metrics, data and model hashes, packages, params, commit.
    `better`: `METRIC=higher|lower`, over what the gates say, for telling a regression."""
    directions = {}
    for text in better:
        name, _, way = text.partition("=")
        if not name or way not in ("higher", "lower"):
            raise UsageError(f"--better {text!r}: expected METRIC=higher or METRIC=lower")
        directions[name] = way
    wa, ref_a = _release(targets, a, local)
    b_text = sibling(wa, b)
    wb, ref_b = _release(targets, b_text, local or (wa.is_local and b_text != b))
    old = load_release(wa.target, ref_a, layers=False, where=wa.display)
    new = load_release(wb.target, ref_b, layers=False, where=wb.display)
    return DiffResult(wa.display, wb.display, diff_records(old.record, new.record, directions))


def ls(
    targets: Targets,
    repository: str,
    *,
    sort: str | None = None,
    asc: bool = False,
    where: Sequence[str] = (),
    records: bool = True,
    local: bool = False,
    columns: Sequence[str] = (),
) -> LsResult:
    """A repository's versions; with `records`, every version's record is read (one manifest GET each,
    in parallel) and filtered by `where` (record/where.py's language) and ordered by `sort`; `columns`
    names params to show."""
    from modelpack.release import query  # the query language and the readers: only ls needs them

    wheres = parse_where(targets, where)
    place = targets.open(repository, local=local)
    if place.ref is not None:
        raise UsageError(
            f"ls takes a repository, not a release: drop the tag from {repository!r}",
            hint=f"modelpack ls {place.repository}",
        )
    tags = query.release_tags(place.target.list_tags())
    envs = environments(Place.of(place), tags)
    if not records and not (sort or wheres or columns):
        return LsResult(place.repository, tuple(tags), (), environments=envs)
    # one referrers listing per version: the newest test report and the labels (archived) shown beside it
    read = query.read_versions(place.target, tags, reports=True)
    versions, notes = choose(read, wheres, sort, asc)
    _check_columns(read, columns)
    return LsResult(
        place.repository, tuple(v.tag for v in versions), tuple(versions), sort, envs, notes, tuple(columns)
    )


def parse_where(targets: Targets, texts: Sequence[str]) -> list[Condition]:
    """`--where` texts as conditions, a published dataset (`dataset=REG/REPO:TAG`) resolved to the
    artifact's digest so records match by content: the one reading `ls` and the portal's catalog share."""
    from modelpack.dataset.read import load_dataset
    from modelpack.record import where as q

    out = []
    for text in texts:
        c = q.parse(text)
        if c.published:
            place = targets.open(c.key)
            c = c.resolved(
                load_dataset(place.target, place.need_ref("match"), where=c.key, full=False).digest
            )
        out.append(c)
    return out


def choose(
    read: Sequence[query.Version], wheres: Sequence[Condition], sort: str | None, asc: bool
) -> tuple[list[query.Version], tuple[str, ...]]:
    """The versions `wheres` keep, ordered by `sort`, and the notes saying how the conditions were read."""
    from modelpack.release import query

    if sort is not None:
        query.check_metric(read, sort, "--sort")
    resolved, notes = query.resolve(wheres, read)
    chosen = query.select(read, resolved, sort, asc)
    return chosen, tuple(notes + query.spanning(resolved, chosen))


def _check_columns(read: Sequence[query.Version], columns: Sequence[str]) -> None:
    import difflib

    from modelpack.release import query

    known = {p for s in query.subjects(read).values() for p in s.params}
    for c in columns:
        if read and c not in known:
            close = difflib.get_close_matches(c, sorted(known), n=1)
            raise UsageError(
                f"--columns {c!r}: no version records that param",
                hint=f"did you mean {close[0]!r}?"
                if close
                else f"params: {', '.join(sorted(known)) or 'none'}",
            )


def list_store(targets: Targets) -> ListResult:
    """Every release of the local store, by repository and tag (what `modelpack list` shows)."""
    store = targets.store
    if not store.index_path.is_file():
        return ListResult(str(targets.store_path), ())
    by_name = {
        e.annotations.get("org.opencontainers.image.ref.name"): e for e in store.read_index().manifests
    }
    entries = []
    for repo, tags in store_repositories(store).items():
        for t in tags:
            e = by_name[f"{repo}:{t}"]
            entries.append(StoreEntry(repo, t, e.digest, e.media_type, e.artifact_type))
    return ListResult(str(targets.store_path), tuple(entries))


def _version_json(v: query.Version, environment: bool) -> dict[str, Any]:
    assert v.release is not None
    rec = v.release.record
    return {
        "tag": v.tag,
        "version": rec.version,
        "alias": v.alias,
        "environment": environment,
        "test": {"passed": v.test_passed, "metrics": dict(v.tested)} if v.test_passed is not None else None,
        "labels": {name: lb.to_json() for name, lb in sorted(v.labels.items())},
        "digest": v.release.digest,
        "created": rec.created,
        "metrics": {k: {"value": m.value, "dataset": m.dataset} for k, m in sorted(rec.metrics.items())},
        "params": dict(rec.params),
        "datasets": {d.name: d.sha256 for d in rec.datasets},
        "git": rec.git.to_json() if rec.git else None,
    }
