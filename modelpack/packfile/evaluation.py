"""`tests.evaluate` and `tests.load` in modelpack.yaml, read into the record's plans.

tests:
  evaluate:
    dataset: registry.example/data/cancer:3.0.0   # a published dataset version
    file: test.csv              # optional: the CSV inside it (default: its only .csv)
    features: [radius, texture]
    target: diagnosis
    task: classification        # or regression
    input: input                # the V2 input tensor (default "input")
    prediction: label           # the output holding predictions (default: the first)
    scores: probabilities       # optional: class scores, for ROC AUC and log loss
    slices: [sex, age_band]     # optional: metrics per slice, fairness gaps across them
    positive: "1"               # optional: the positive class for fairness gaps
    batch: 64
    tolerance: 0.02             # how far a recorded metric may sit above the measured one
  load: {connections: 8, duration: 10s}
"""

from __future__ import annotations

import re

import yaml

from modelpack.packfile.nodes import Doc, is_null
from modelpack.record.evaluation import DEFAULT_BATCH, DEFAULT_TOLERANCE, TASKS, EvaluationPlan, LoadPlan

_EVALUATE_KEYS = ("dataset", "file", "features", "target", "task", "input", "prediction", "scores",
                  "positive", "slices", "batch", "tolerance")  # fmt: skip
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$")
MAX_LOAD_SECONDS = 600.0


def read_evaluate(d: Doc, node: yaml.Node) -> EvaluationPlan:
    m = d.mapping(node, "tests.evaluate", _EVALUATE_KEYS, required=("dataset", "features", "target"))

    def opt(key: str) -> str | None:
        return d.optional_string(m.get(key), f"tests.evaluate.{key}")

    dataset = d.string(m["dataset"], "tests.evaluate.dataset")
    if ":" not in dataset.rsplit("/", 1)[-1] and "@" not in dataset:
        raise d.error(m["dataset"], "tests.evaluate.dataset", f"{dataset!r} names no version",
                      hint="write REG/REPO:VERSION (or @sha256:...) of a pushed dataset")  # fmt: skip
    features = tuple(t for t, _ in d.strings(m["features"], "tests.evaluate.features"))
    if not features:
        raise d.error(m["features"], "tests.evaluate.features", "must name at least one column")
    target = d.string(m["target"], "tests.evaluate.target")
    if target in features:
        raise d.error(m["target"], "tests.evaluate.target", f"{target!r} is also a feature")
    task = d.choice(m["task"], "tests.evaluate.task", TASKS) if "task" in m else "classification"
    slices = tuple(t for t, _ in d.strings(m.get("slices"), "tests.evaluate.slices"))
    batch = d.integer(m["batch"], "tests.evaluate.batch", 1, 65_536) if "batch" in m else DEFAULT_BATCH
    tolerance = DEFAULT_TOLERANCE
    if "tolerance" in m:
        tolerance = d.number(m["tolerance"], "tests.evaluate.tolerance")
    if tolerance < 0:
        raise d.error(m["tolerance"], "tests.evaluate.tolerance", "must not be negative")
    return EvaluationPlan(
        dataset=dataset,
        features=features,
        target=target,
        task=task,
        file=opt("file"),
        input=opt("input") or "input",
        prediction=opt("prediction"),
        scores=opt("scores"),
        positive=opt("positive"),
        slices=slices,
        batch=batch,
        tolerance=tolerance,
    )


def read_load(d: Doc, node: yaml.Node) -> LoadPlan:
    m = d.mapping(node, "tests.load", ("connections", "duration"), required=("connections", "duration"))
    connections = d.integer(m["connections"], "tests.load.connections", 1, 1024)
    text = d.string(m["duration"], "tests.load.duration")
    try:
        seconds = parse_duration(text)
    except ValueError as e:
        raise d.error(m["duration"], "tests.load.duration", str(e), hint="e.g. 10s, 500ms, 2m") from None
    return LoadPlan(connections, seconds)


def parse_duration(text: str) -> float:
    """`10s`, `500ms`, `2m` or a bare number of seconds; between 0.1 s and 10 minutes."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration")
    value = float(match.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}[match.group(2)]
    if not 0.1 <= value <= MAX_LOAD_SECONDS:
        raise ValueError(f"{text!r} is out of range (0.1 s to {MAX_LOAD_SECONDS:.0f} s)")
    return value


def optional(node: yaml.Node | None) -> bool:
    return node is not None and not is_null(node)
