"""`--where`: a typed query over what a record (or a run) says, parsed once and matched against plain data.

One language for `ls`, the portal's catalog and `runs ls`. Pure: no I/O, no registry; a published dataset's
reference is resolved to its digest by the caller (`Condition.resolved`).

API:

- `parse(text) -> Condition` (raises `UsageError` naming the text and the accepted shapes). Shapes:
    `param.KEY OP VALUE`  a param (dotted names for nested ones): `param.alpha<0.001`, `param.layers=[64,32]`
    `param=KEY=VALUE`     the same as `param.KEY=VALUE` (the older spelling, kept)
    `metric.KEY OP NUMBER` a metric: `metric.f1>=0.9`
    `KEY OP VALUE`        a bare name: a metric, or a param when no subject records a metric of that name
                          and some record a param of it (`resolve` decides and says so in a note)
    `tag=NAME`            the subject carries that tag (a run's tag; a release's tags and labels)
    `dataset=REF`         measured on a dataset: `dataset=NAME` (every version of that name: `spanned` tells),
                          `dataset=sha256:PREFIX` (8+ hex digits of the content hash or the artifact digest),
                          `dataset=REG/REPO:TAG` (a published dataset: by its digest, once `resolved`)
  OP is one of `>= <= > < == = !=` (`=` is `==`).
- Values are typed (`value(text)`): `1e-4` and `0.0001` are the same number, `3` equals `3.0`, `true`/`false`
  are booleans, `[64,32]` a list (a record keeps a list param as that JSON text; it compares as the list),
  `'0.1'` or `"x y"` quoted text stays text. Ordering (`< <= > >=`) holds between numbers only; a param that
  is text never passes an ordering condition, it is not compared as text.
- `Subject`: the plain frozen facts a condition reads (params, metrics, the dataset each metric was measured
  on, tags, datasets). `ls` builds one per release, `runs` one per run.
- `resolve(condition, subjects) -> (Condition, note | None)`: a bare name made a metric or a param; a name no
  subject records is a `UsageError` with a suggestion.
- `matches(condition, subject, measured=None) -> bool`: `measured` names the metric the caller sorts on, so
  `dataset=v3` asks where that metric was measured.
- `spanned(condition, subjects)`: for `dataset=NAME`, the distinct dataset versions (hashes) the matching
  subjects used under that name: more than one means the answer mixes versions, which the caller says.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from modelpack.errors import UsageError

Kind = Literal["param", "metric", "name", "tag", "dataset"]
OPS = (">=", "<=", "!=", "==", ">", "<", "=")
SHAPES = (
    "param.KEY<VALUE, metric.KEY>=NUMBER, a gate such as accuracy>=0.9, tag=NAME, dataset=NAME|REG/REPO:TAG"
    " or param=KEY=VALUE"
)
_COMPARE = re.compile(
    r"^\s*(?:(param|metric)\.)?([A-Za-z_][A-Za-z0-9_\-/]*(?:\.[A-Za-z0-9_\-/]+)*)\s*(>=|<=|!=|==|>|<|=)\s*(.*?)\s*$"
)
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
_MIN_HASH = len("sha256:") + 8  # a dataset named by a hash prefix needs 8 hex digits to mean one thing


@dataclass(frozen=True)
class DatasetFact:
    """A dataset a subject used: its name there, content hash, and (published) artifact digest and ref."""

    name: str
    sha256: str | None = None
    digest: str | None = None
    ref: str | None = None

    @property
    def version(self) -> str | None:
        """What tells two versions of one name apart: the artifact digest, else the content hash."""
        return self.digest or self.sha256


@dataclass(frozen=True)
class Subject:
    params: Mapping[str, Any] = field(default_factory=dict)  # flat dotted names -> values as recorded
    metrics: Mapping[str, float] = field(default_factory=dict)
    measured_on: Mapping[str, str] = field(
        default_factory=dict
    )  # metric -> the dataset name it was measured on
    tags: frozenset[str] = frozenset()
    datasets: tuple[DatasetFact, ...] = ()


@dataclass(frozen=True)
class Condition:
    kind: Kind
    key: str  # the param or metric name, the tag, the dataset text
    op: str = "=="
    value: Any = None  # typed; for a published dataset, its digest once resolved
    text: str = ""  # as the user wrote it, for messages

    @property
    def published(self) -> bool:
        """`dataset=REG/REPO:TAG`: matched by the digest the caller resolves (`resolved`)."""
        return self.kind == "dataset" and "/" in self.key

    def resolved(self, digest: str) -> Condition:
        return replace(self, value=digest)

    def __str__(self) -> str:
        return self.text or f"{self.kind}.{self.key}{self.op}{self.value}"


def parse(text: str) -> Condition:
    stripped = text.strip()
    kind, sep, rest = stripped.partition("=")
    if sep and kind in ("dataset", "tag"):
        if not rest or rest.startswith("="):
            raise UsageError(f"--where {text!r}: {kind}= needs a value", hint=f"e.g. {kind}=NAME")
        return Condition(kind, rest, text=text)  # type: ignore[arg-type]
    if sep and kind == "param" and not rest.startswith("="):
        key, sep2, wanted = rest.partition("=")
        if not (sep2 and key):
            raise UsageError(
                f"--where {text!r} is not understood", hint="write param=KEY=VALUE or param.KEY=VALUE"
            )
        return Condition("param", key, "==", value(wanted), text)
    match = _COMPARE.match(stripped)
    if not match:
        raise UsageError(f"--where {text!r} is not understood", hint=f"use {SHAPES}")
    prefix, key, op, wanted = match.groups()
    op = "==" if op == "=" else op
    if wanted == "":
        raise UsageError(f"--where {text!r}: nothing to compare with", hint=f"e.g. {key}{op}0.9")
    typed = value(wanted)
    if prefix == "metric" and not _is_number(typed):
        raise UsageError(f"--where {text!r}: a metric compares with a number, not {wanted!r}")
    if op in ("<", "<=", ">", ">=") and not _is_number(typed):
        raise UsageError(
            f"--where {text!r}: {op} compares numbers; {wanted!r} is not one", hint="use = or !="
        )
    return Condition(prefix or "name", key, op, typed, text)  # type: ignore[arg-type]


def value(text: str) -> Any:
    """A `--where` value, or a param recorded as text, read as the type it spells (see the module doc)."""
    t = text.strip()
    if len(t) >= 2 and t[0] == t[-1] and t[0] in "'\"":
        return t[1:-1]
    low = t.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("null", "none", "~"):
        return None
    if _NUMBER.match(t):
        number = float(t)
        return int(number) if number.is_integer() and abs(number) < 2**53 else number
    if t.startswith("[") and t.endswith("]"):
        try:
            items = json.loads(t)
        except json.JSONDecodeError:
            items = [value(x) for x in t[1:-1].split(",")] if t[1:-1].strip() else []
        return tuple(value(x) if isinstance(x, str) else x for x in items)
    return t


def resolve(
    condition: Condition, subjects: Iterable[Subject], metrics: Iterable[str] = ()
) -> tuple[Condition, str | None]:
    """Check a condition's name against what `subjects` record (plus `metrics`, those a caller knows of
    although no subject has them yet, e.g. a test run's latency) and make a bare name a metric (the gate
    ls always took) or, when no subject records such a metric and some record a param of that name, a
    param, with a note saying so. A name nothing records is an error with a suggestion; with no subject
    at all there is nothing to check against and a bare name stays a metric."""
    if condition.kind not in ("name", "metric", "param"):
        return condition, None
    subjects = list(subjects)
    known_metrics = {m for s in subjects for m in s.metrics} | set(metrics)
    params = {p for s in subjects for p in s.params}
    key, kind = condition.key, condition.kind
    if kind == "param" and (key in params or not subjects):
        return condition, None
    if kind in ("name", "metric") and (key in known_metrics or not subjects):
        if not _is_number(condition.value):
            raise UsageError(f"--where {condition}: the metric {key!r} compares with a number")
        return replace(condition, kind="metric"), None
    if kind == "name" and key in params:
        note = f"--where {condition}: {key!r} is a param, not a metric: compared as param.{key}"
        return replace(condition, kind="param"), note
    what = {"param": "param", "metric": "metric"}.get(kind, "metric or param")
    pool = {"param": params, "metric": known_metrics}.get(kind, known_metrics | params)
    close = difflib.get_close_matches(key, sorted(pool), n=1)
    raise UsageError(
        f"--where {condition}: no version records the {what} {key!r}",
        hint=f"did you mean {close[0]!r}?" if close else f"known: {', '.join(sorted(pool)) or 'none'}",
    )


def matches(condition: Condition, subject: Subject, measured: str | None = None) -> bool:
    kind = condition.kind
    if kind in ("metric", "name"):
        got = subject.metrics.get(condition.key)
        return got is not None and compare(got, condition.op, condition.value)
    if kind == "param":
        if condition.key not in subject.params:
            return False
        got = subject.params[condition.key]
        return compare(value(got) if isinstance(got, str) else got, condition.op, condition.value)
    if kind == "tag":
        return condition.key in subject.tags
    return _on_dataset(condition, subject, measured)


def compare(actual: Any, op: str, wanted: Any) -> bool:
    """Numbers by value (`1e-4 == 0.0001`, `3 == 3.0`; booleans are not numbers), lists item by item,
    text as text; ordering between numbers only."""
    if isinstance(actual, list):
        actual = tuple(actual)
    if op in ("<", "<=", ">", ">="):
        if not (_is_number(actual) and _is_number(wanted)):
            return False
        a, w = float(actual), float(wanted)
        return {"<": a < w, "<=": a <= w, ">": a > w, ">=": a >= w}[op]
    same = _same(actual, wanted)
    return same if op == "==" else not same


def spanned(condition: Condition, subjects: Iterable[Subject]) -> tuple[str, ...]:
    """For `dataset=NAME`: the distinct versions (digest or content hash) named NAME among `subjects`."""
    if condition.kind != "dataset" or condition.published or condition.key.startswith("sha256:"):
        return ()
    found = {d.version for s in subjects for d in s.datasets if d.name == condition.key and d.version}
    return tuple(sorted(found))


def note_spanned(condition: Condition, subjects: Sequence[Subject]) -> str | None:
    versions = spanned(condition, subjects)
    if len(versions) < 2:
        return None
    shown = ", ".join(v.removeprefix("sha256:")[:12] for v in versions)
    return (
        f"--where {condition}: {condition.key!r} names {len(versions)} dataset versions ({shown}); "
        f"the answer spans them: name one by REG/REPO:TAG or dataset=sha256:PREFIX"
    )


def _same(actual: Any, wanted: Any) -> bool:
    if _is_number(actual) and _is_number(wanted):
        return math.isclose(float(actual), float(wanted), rel_tol=1e-12, abs_tol=0.0)
    if isinstance(actual, tuple) and isinstance(wanted, tuple):
        return len(actual) == len(wanted) and all(_same(a, w) for a, w in zip(actual, wanted, strict=True))
    if isinstance(actual, bool) or isinstance(wanted, bool) or actual is None or wanted is None:
        return actual is wanted
    return type(actual) is type(wanted) and bool(actual == wanted)


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _on_dataset(condition: Condition, subject: Subject, measured: str | None) -> bool:
    """Measured on the dataset: the sorted metric's dataset when it names one; otherwise some metric was
    measured on it, or the subject lists it among its datasets."""
    if condition.published and condition.value is None:
        raise ValueError(f"{condition}: a published dataset must be resolved to its digest before matching")
    hits = {d.name for d in subject.datasets if _is(d, condition)}
    if measured is not None and measured in subject.measured_on:
        return subject.measured_on[measured] in hits or _bare(condition, subject.measured_on[measured])
    if any(on in hits or _bare(condition, on) for on in subject.measured_on.values()):
        return True
    return bool(hits)


def _is(d: DatasetFact, condition: Condition) -> bool:
    if condition.published:
        return d.digest is not None and d.digest == str(condition.value)
    wanted = condition.key
    if wanted.startswith("sha256:"):
        return len(wanted) >= _MIN_HASH and any(
            h is not None and h.startswith(wanted) for h in (d.sha256, d.digest)
        )
    return d.name == wanted


def _bare(condition: Condition, on: str) -> bool:
    # A metric may name a dataset the subject's dataset list does not hold (records built before datasets
    # were listed): the name alone then decides.
    return not condition.published and not condition.key.startswith("sha256:") and on == condition.key
