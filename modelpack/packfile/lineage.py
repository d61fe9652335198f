"""Lineage sections of modelpack.yaml: datasets, metrics (and the dataset each was measured on), params."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from modelpack.packfile.files import Locator
from modelpack.packfile.nodes import Doc, did_you_mean, is_null
from modelpack.packfile.schema import DatasetSpec, HistorySpec
from modelpack.record.curves import HIGHER, LOWER
from modelpack.record.curves_read import SUFFIXES
from modelpack.record.located import located
from modelpack.record.metrics import flatten_params, load_metrics_file, load_params_file
from modelpack.record.record import Metric, ParamValue


class LineageReader:
    def __init__(self, doc: Doc, loc: Locator) -> None:
        self.doc = doc
        self.loc = loc
        self.root = loc.root

    def datasets(self, node: yaml.Node | None) -> tuple[DatasetSpec, ...]:
        d = self.doc
        out: list[DatasetSpec] = []
        for i, item in enumerate(d.sequence(node, "datasets", scalar_ok=False) if node is not None else []):
            key = f"datasets[{i}]"
            m = d.mapping(item, key, ("name", "path", "uri", "package", "ref"), required=("name",))
            name = d.string(m["name"], f"{key}.name")
            if any(ds.name == name for ds in out):
                raise d.error(m["name"], f"{key}.name", f"{name!r} is declared twice")
            if "path" not in m and "uri" not in m and "ref" not in m:
                raise d.error(item, key, "needs a path, a uri or a ref (a published dataset)")
            path = text = None
            if "path" in m:
                path, text = self.loc.path(m["path"], f"{key}.path", inside=False)
            uri = d.optional_string(m.get("uri"), f"{key}.uri")
            package = d.boolean(m["package"], f"{key}.package") if "package" in m else False
            if package and path is None:
                raise d.error(m["package"], f"{key}.package", "only a dataset with a path can be packaged")
            if package and path is not None and os.path.commonpath([path, self.root]) != str(self.root):
                raise d.error(m["path"], f"{key}.path", "a packaged dataset must live next to modelpack.yaml")
            if package and path is not None:
                self.loc.contain(m["path"], f"{key}.path", path)  # what ships may not be a link out
            ref = d.optional_string(m.get("ref"), f"{key}.ref")
            if ref is not None and ("/" not in ref or ":" not in ref.rsplit("/", 1)[-1]):
                raise d.error(m["ref"], f"{key}.ref", f"{ref!r} is not REG/REPO:VERSION")
            out.append(DatasetSpec(name, path, text, uri, package, ref))
        return tuple(out)

    def metrics(
        self, node: yaml.Node | None, datasets: tuple[DatasetSpec, ...]
    ) -> tuple[tuple[tuple[str, Metric], ...], Path | None]:
        d = self.doc
        if node is None or is_null(node):
            return (), None
        if isinstance(node, yaml.ScalarNode):  # shorthand: `metrics: metrics.json`
            m: dict[str, yaml.Node] = {"file": node}
        else:
            m = d.mapping(node, "metrics", ("file", "dataset", "values", "history"))
        default = None
        if "dataset" in m:
            default = self.dataset_ref(m["dataset"], "metrics.dataset", datasets)
        found: dict[str, Metric] = {}
        metrics_file = None
        if "file" in m:
            metrics_file, text = self.loc.path(m["file"], "metrics.file", inside=False, kind="file")
            found = load_metrics_file(metrics_file, dataset=default, display=self.loc.shown(text))
        from_file = set(found)
        for name, metric in self.inline_metrics(m.get("values"), "metrics.values", default, datasets):
            if name in found:
                twice = "is given twice (as a dotted name and nested)"
                what = "is also in the metrics file" if name in from_file else twice
                raise d.error(m["values"], f"metrics.values.{name}", what)
            found[name] = metric
        return tuple(sorted(found.items())), metrics_file

    def history(self, node: yaml.Node | None) -> HistorySpec | None:
        """`metrics.history`: where it is and which way is better; the build reads the file itself."""
        d = self.doc
        if not isinstance(node, yaml.MappingNode):
            return None
        h = d.mapping(node, "metrics", ("file", "dataset", "values", "history")).get("history")
        if h is None or is_null(h):
            return None
        key = "metrics.history"
        m = {"file": h}
        if not isinstance(h, yaml.ScalarNode):
            m = d.mapping(h, key, ("file", "better"), ("file",))
            key = "metrics.history.file"
        path, text = self.loc.path(m["file"], key, inside=True, kind="file")
        if path.suffix.lower() not in SUFFIXES:
            raise d.error(m["file"], key, f"{text!r} is neither .csv nor .jsonl",
                          hint="a training history is a CSV file with a header, or JSON lines")  # fmt: skip
        better: list[tuple[str, str]] = []
        if "better" in m and not is_null(m["better"]):
            if not isinstance(m["better"], yaml.MappingNode):
                what = "expected a mapping of column: higher | lower"
                raise d.error(m["better"], "metrics.history.better", what)
            for k, v in m["better"].value:
                name = d.string(k, "metrics.history.better")
                if any(n == name for n, _ in better):
                    raise d.error(k, f"metrics.history.better.{name}", "is given twice")
                better.append((name, d.choice(v, f"metrics.history.better.{name}", (HIGHER, LOWER))))
        return HistorySpec(path, self.loc.shown(text), tuple(sorted(better)))

    def inline_metrics(
        self, node: yaml.Node | None, key: str, default: str | None, datasets: tuple[DatasetSpec, ...]
    ) -> list[tuple[str, Metric]]:
        d = self.doc
        if node is None or is_null(node):
            return []
        if not isinstance(node, yaml.MappingNode):
            raise d.error(node, key, "expected a mapping of metric names to numbers")
        out: list[tuple[str, Metric]] = []
        for k, v in node.value:
            name = d.string(k, key)
            sub = f"{key}.{name}"
            if any(n == name for n, _ in out):
                raise d.error(k, sub, "is given twice")
            keys = (
                {str(kk.value) for kk, _ in v.value if isinstance(kk, yaml.ScalarNode)}
                if isinstance(v, yaml.MappingNode)
                else set()
            )
            if "value" in keys and keys <= {"value", "dataset"}:
                mm = d.mapping(v, sub, ("value", "dataset"))
                ds = (
                    self.dataset_ref(mm["dataset"], f"{sub}.dataset", datasets)
                    if "dataset" in mm
                    else default
                )
                out.append((name, Metric(d.number(mm["value"], f"{sub}.value"), ds)))
            elif isinstance(v, yaml.MappingNode):
                out.extend((f"{name}.{n}", m) for n, m in self.inline_metrics(v, sub, default, datasets))
            else:
                value = d.number(v, sub)
                out.append((name, Metric(value, default)))
        return out

    def dataset_ref(self, node: yaml.Node, key: str, datasets: tuple[DatasetSpec, ...]) -> str:
        name = self.doc.string(node, key)
        names = [ds.name for ds in datasets]
        if name not in names:
            hint = did_you_mean(name, names) or (
                f"declared datasets: {', '.join(names)}" if names else "declare it under datasets:"
            )
            raise self.doc.error(node, key, f"dataset {name!r} is not declared under datasets", hint=hint)
        return name

    def params(self, node: yaml.Node | None) -> tuple[tuple[tuple[str, ParamValue], ...], Path | None]:
        d = self.doc
        if node is None or is_null(node):
            return (), None
        if isinstance(node, yaml.ScalarNode):  # `params: params.yaml`
            path, text = self.loc.path(node, "params", inside=False, kind="file")
            return tuple(sorted(load_params_file(path, display=self.loc.shown(text)).items())), path
        if not isinstance(node, yaml.MappingNode):
            raise d.error(node, "params", "expected a file name or a mapping of names to values")
        values = flatten_params(located(node, d.display), where=d.display)
        return tuple(sorted(values.items())), None
