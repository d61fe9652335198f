"""The dataset record: what a published dataset artifact holds and where it came from.

`sha256` is the same hash a model's record gives a dataset it names by path (bundle/datasets.py): a
file's sha256, or for a directory the sha256 of its `sha256sum` listing, which `listing()` rebuilds from
`files`. So a model trained on a local copy and the published artifact agree on one hash, and
`sha256sum -c` over `listing()` checks a pulled copy. The full record is a layer of the artifact; the
manifest annotation carries `summary()` (everything but the per-file lists), so `dataset ls` reads one
manifest per version and no blob.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modelpack.errors import ContentError
from modelpack.oci import canonical
from modelpack.oci import digest as digests
from modelpack.record.datastats import FileStats
from modelpack.record.git import GitInfo, opt_str
from modelpack.record.record import FileEntry

DATASET_RECORD_VERSION = 1


@dataclass(frozen=True)
class PublishedDataset:
    """A modelpack.yaml `ref:` resolved at build time: what the model's record keeps of it."""

    ref: str  # as written, REG/REPO:VERSION
    digest: str  # the artifact's manifest digest
    sha256: str
    size: int
    files: int


@dataclass(frozen=True)
class DatasetRecord:
    name: str  # the repository it was pushed to, e.g. "acme/iris-data"
    version: str
    created: str  # RFC 3339, as a bundle's: SOURCE_DATE_EPOCH, the commit time, or the newest file
    who: str
    sha256: str  # file hash, or the hash over the `sha256sum` lines of a directory
    size: int
    kind: str  # "file" or "directory"
    files: tuple[FileEntry, ...] = ()
    stats: tuple[FileStats, ...] = ()
    classes: Mapping[str, int] = field(default_factory=dict)  # of `label`, over every tabular file
    label: str | None = None
    source: str | None = None
    description: str | None = None
    git: GitInfo | None = None
    notes: tuple[str, ...] = ()  # what could not be measured, and why
    file_count: int = -1  # set from files when written; kept from the summary when read from one
    total_rows: int | None = None  # likewise for rows

    @property
    def count(self) -> int:
        return len(self.files) if self.files or self.file_count < 0 else self.file_count

    @property
    def rows(self) -> int | None:
        return sum(s.rows for s in self.stats) if self.stats else self.total_rows

    def listing(self) -> str:
        """The `sha256sum` lines of the files, sorted by path: the listing whose hash a directory has."""
        ordered = sorted(self.files, key=lambda f: f.path.encode("utf-8"))
        return "".join(f"{digests.hex_part(f.sha256)}  {f.path}\n" for f in ordered)

    def summary(self) -> dict[str, Any]:
        out = self.to_json()
        del out["files"], out["stats"]
        return out

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "datasetRecordVersion": DATASET_RECORD_VERSION,
            "name": self.name,
            "version": self.version,
            "created": self.created,
            "who": self.who,
            "sha256": self.sha256,
            "size": self.size,
            "kind": self.kind,
            "fileCount": self.count,
            "files": [{"path": f.path, "sha256": f.sha256, "size": f.size} for f in self.files],
            "stats": [s.to_json() for s in self.stats],
            "rows": self.rows,
            "classes": dict(sorted(self.classes.items())),
            "notes": list(self.notes),
        }
        for key, value in (("label", self.label), ("source", self.source), ("description", self.description)):
            if value is not None:
                out[key] = value
        if self.git is not None:
            out["git"] = self.git.to_json()
        return out

    def to_bytes(self) -> bytes:
        return canonical.dumps(self.to_json())

    @classmethod
    def from_json(cls, obj: Any) -> DatasetRecord:
        if not isinstance(obj, Mapping) or obj.get("datasetRecordVersion") != DATASET_RECORD_VERSION:
            raise ContentError("not a modelpack dataset record (missing or unknown datasetRecordVersion)")
        try:
            git = obj.get("git")
            return cls(
                name=str(obj["name"]),
                version=str(obj["version"]),
                created=str(obj["created"]),
                who=str(obj["who"]),
                sha256=str(obj["sha256"]),
                size=int(obj["size"]),
                kind=str(obj["kind"]),
                files=tuple(
                    FileEntry(f["path"], f["sha256"], int(f["size"])) for f in obj.get("files") or ()
                ),
                stats=tuple(FileStats.from_json(s) for s in obj.get("stats") or ()),
                classes={str(k): int(v) for k, v in (obj.get("classes") or {}).items()},
                label=opt_str(obj.get("label")),
                source=opt_str(obj.get("source")),
                description=opt_str(obj.get("description")),
                git=GitInfo.from_json(git) if git else None,
                notes=tuple(str(n) for n in obj.get("notes") or ()),
                file_count=int(obj.get("fileCount", -1)),
                total_rows=None if obj.get("rows") is None else int(obj["rows"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ContentError(f"malformed modelpack dataset record: {e}") from None

    @classmethod
    def from_bytes(cls, data: bytes | str) -> DatasetRecord:
        try:
            obj = canonical.loads(data)
        except ValueError as e:
            raise ContentError(f"modelpack dataset record is not JSON: {e}") from None
        return cls.from_json(obj)
