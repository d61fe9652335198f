"""Evaluation: every row of a published dataset version through the running model, in batched V2 infer
requests, and the answers measured (measure.py). Then the record's own metrics set beside the measured
ones: a recorded number better than the served one by more than the tolerance is a gap.

The dataset arrives already pulled and verified by digest (the api does that: `DatasetFile`); the only
side effect here is the injected `infer` call, the same one golden cases use.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelpack.errors import InputError, TestNotRunError
from modelpack.record.evaluation import LOWER_IS_BETTER, EvaluationPlan
from modelpack.testing.cases import Infer
from modelpack.testing.measure import Measurement, classification, label, regression

MAX_ROWS = 1_000_000  # an evaluation file is read whole; past this it is not a test set


@dataclass(frozen=True)
class DatasetFile:
    """The evaluation file, pulled from its dataset version and verified against the record."""

    reference: str  # as the plan (or --evaluate) names it
    digest: str  # the dataset manifest digest
    name: str  # the dataset's record name
    version: str
    file: str  # path inside the dataset
    sha256: str  # the file's sha256, as the dataset record lists it (and the pull verified)
    path: Path  # where it was written locally


@dataclass(frozen=True)
class Claim:
    metric: str
    recorded: float
    measured: float
    gap: float  # how much better the record claims than the served model does (<= 0: no gap)
    flagged: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "recorded": self.recorded,
            "measured": self.measured,
            "gap": self.gap,
            "flagged": self.flagged,
        }


@dataclass(frozen=True)
class Evaluation:
    dataset: DatasetFile
    plan: EvaluationPlan
    measurement: Measurement
    claims: tuple[Claim, ...]
    requests: int  # batched infer requests sent

    def flagged(self) -> tuple[str, ...]:
        """One line per gap: "served f1_macro 0.912 vs recorded 0.971 on cancer-data 3.0.0"."""
        where = f"{self.dataset.name} {self.dataset.version}"
        return tuple(
            f"served {c.metric} {c.measured:.3f} vs recorded {c.recorded:.3f} on {where}"
            for c in self.claims
            if c.flagged
        )

    def to_json(self) -> dict[str, Any]:
        d = self.dataset
        return {
            "dataset": {
                "reference": d.reference,
                "digest": d.digest,
                "name": d.name,
                "version": d.version,
                "file": d.file,
                "sha256": d.sha256,
            },
            "plan": self.plan.to_json(),
            "requests": self.requests,
            **self.measurement.to_json(),
            "claims": [c.to_json() for c in self.claims],
            "flagged": list(self.flagged()),
        }


@dataclass(frozen=True)
class Table:
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    def column(self, name: str) -> list[str]:
        i = self.columns.index(name)
        return [r[i] for r in self.rows]


def read_table(path: Path, plan: EvaluationPlan, where: str) -> Table:
    """The CSV, with every column the plan names present: a missing one is one line naming it."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise InputError(f"{where}: the file is empty")
        columns = tuple(h.strip() for h in header)
        for role, names in (("feature", plan.features), ("target", (plan.target,)), ("slice", plan.slices)):
            for name in names:
                if name not in columns:
                    raise InputError(
                        f"{where}: no column {name!r} (tests.evaluate {role}); the file has "
                        f"{', '.join(columns)}",
                        hint="fix tests.evaluate in modelpack.yaml, or evaluate on the dataset it names",
                    )
        rows: list[tuple[str, ...]] = []
        for n, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(columns):
                raise InputError(f"{where}:{n}: {len(row)} fields, the header has {len(columns)}")
            rows.append(tuple(row))
            if len(rows) > MAX_ROWS:
                raise InputError(f"{where}: more than {MAX_ROWS} rows; evaluate on a test split")
    if not rows:
        raise InputError(f"{where}: no rows to evaluate on")
    return Table(columns, tuple(rows))


def features(table: Table, plan: EvaluationPlan, where: str) -> list[list[float]]:
    idx = [table.columns.index(c) for c in plan.features]
    return [[_number(row[i], table.columns[i], n, where) for i in idx] for n, row in enumerate(table.rows, 2)]


def numbers(table: Table, column: str, where: str) -> list[float]:
    return [_number(v, column, n, where) for n, v in enumerate(table.column(column), 2)]


def _number(text: str, column: str, line: int, where: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not math.isfinite(v):
        raise InputError(f"{where}:{line}: column {column!r} holds {text!r}, not a number")
    return v


def predict(
    x: Sequence[Sequence[float]],
    plan: EvaluationPlan,
    infer: Infer,
    progress: Callable[[int, int], None] = lambda _d, _t: None,
) -> tuple[list[Any], list[list[float]] | None, int]:
    """Every row in requests of `plan.batch`: (predictions, scores or None, requests sent)."""
    predictions: list[Any] = []
    scores: list[list[float]] | None = [] if plan.scores else None
    sent = 0
    for start in range(0, len(x), plan.batch):
        chunk = x[start : start + plan.batch]
        body = {
            "inputs": [
                {
                    "name": plan.input,
                    "shape": [len(chunk), len(plan.features)],
                    "datatype": "FP32",
                    "data": [v for row in chunk for v in row],
                }
            ]
        }
        status, answer = infer(body)
        sent += 1
        if status != 200 or not isinstance(answer, dict):
            message = answer.get("error") if isinstance(answer, dict) else str(answer)[:200]
            raise TestNotRunError(
                f"evaluation request for rows {start}-{start + len(chunk) - 1} answered HTTP {status}: "
                f"{message}",
                hint="check tests.evaluate.input and features against the model's input",
            )
        outputs = {o.get("name"): o for o in answer.get("outputs") or [] if isinstance(o, dict)}
        pred_name = plan.prediction or next(iter(outputs), None)
        if pred_name not in outputs:
            raise TestNotRunError(
                f"the model answered no output {pred_name!r} (it has {', '.join(map(str, outputs))})",
                hint="set tests.evaluate.prediction to one of them",
            )
        values = _flat(outputs[pred_name].get("data"))
        if len(values) != len(chunk):
            raise TestNotRunError(
                f"output {pred_name!r} holds {len(values)} values for {len(chunk)} rows",
                hint="tests.evaluate.prediction must name an output with one value per row",
            )
        predictions.extend(values)
        if scores is not None:
            if plan.scores not in outputs:
                raise TestNotRunError(f"the model answered no output {plan.scores!r} (tests.evaluate.scores)")
            flat = [float(v) for v in _flat(outputs[plan.scores].get("data"))]
            width = len(flat) // len(chunk) if chunk else 0
            if width * len(chunk) != len(flat) or width == 0:
                raise TestNotRunError(f"output {plan.scores!r} does not hold one row of scores per row")
            scores.extend(flat[i : i + width] for i in range(0, len(flat), width))
        progress(start + len(chunk), len(x))
    return predictions, scores, sent


def _flat(data: Any) -> list[Any]:
    if isinstance(data, list):
        return [v for item in data for v in _flat(item)]
    return [data]


@dataclass(frozen=True)
class Prepared:
    """The evaluation file read and checked: every named column present, features and (for regression)
    targets numbers. Made before the runtime starts, so a wrong column costs a second, not a start-up."""

    plan: EvaluationPlan
    data: DatasetFile
    table: Table
    x: list[list[float]]
    y: list[float] | None  # regression targets

    @property
    def where(self) -> str:
        return f"{self.data.reference}: {self.data.file}"


def prepare(plan: EvaluationPlan, data: DatasetFile) -> Prepared:
    where = f"{data.reference}: {data.file}"
    table = read_table(data.path, plan, where)
    y = numbers(table, plan.target, where) if plan.task == "regression" else None
    return Prepared(plan, data, table, features(table, plan, where), y)


def evaluate(
    prepared: Prepared,
    infer: Infer,
    recorded: Mapping[str, float],
    info: Callable[[str], None] = lambda _m: None,
) -> Evaluation:
    plan, data, table = prepared.plan, prepared.data, prepared.table
    info(f"evaluating on {len(prepared.x)} rows of {data.name} {data.version} in batches of {plan.batch}")
    predictions, scores, sent = predict(prepared.x, plan, infer)
    slices = {c: [label(v) for v in table.column(c)] for c in plan.slices}
    if prepared.y is None:
        measurement = classification(
            [label(v) for v in table.column(plan.target)],
            [label(v) for v in predictions],
            scores,
            slices,
            plan.positive,
        )
    else:
        measurement = regression(prepared.y, [float(v) for v in predictions], slices)
    return Evaluation(data, plan, measurement, claims(recorded, measurement.metrics, plan.tolerance), sent)


def claims(
    recorded: Mapping[str, float], measured: Mapping[str, float], tolerance: float
) -> tuple[Claim, ...]:
    """Each metric both recorded and measured; the gap is signed so a served model better than its
    record is never flagged."""
    out: list[Claim] = []
    for name in sorted(set(recorded) & set(measured)):
        r, m = float(recorded[name]), float(measured[name])
        gap = (m - r) if name in LOWER_IS_BETTER else (r - m)
        out.append(Claim(name, r, m, round(gap, 12), gap > tolerance))
    return tuple(out)
