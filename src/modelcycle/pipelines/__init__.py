"""Pipelines: lifecycle stages in a file, run in dependency order, skipping what is unchanged.

``modelcycle.yaml``::

    name: cancer
    stages:
      ingest: {add: {dataset: cancer-raw, path: raw/cancer.csv}}
      clean:  {recipe: {input: cancer-raw, file: clean.yaml, into: cancer}}
      split:  {split: {input: cancer, ratios: "0.7,0.15,0.15", stratify: target, seed: 0}}
      train:  {train: {spec: train.yaml}}

Each stage has one kind (``add``, ``recipe``, ``split``, ``train``) and may list
``after: [stage, ...]``. Data flows by dataset name: a stage that reads dataset ``X``
runs after the stage that writes ``X``. Inputs are the latest versions of those datasets.

A stage's fingerprint hashes its kind and parameters, the content of the files it names
(the raw data, the recipe, the train spec) and the content hashes of the dataset
versions it reads. A stage whose fingerprint matches its last successful run is
skipped; anything downstream of a stage that made a new version runs again.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from modelcycle import __version__
from modelcycle.core.errors import NotFoundError, UsageError
from modelcycle.core.hashing import hash_bytes, hash_file, hash_text
from modelcycle.data.yamlio import suggest
from modelcycle.store.pipelines import PipelineStore

if TYPE_CHECKING:
    from modelcycle.data.service import DatasetService
    from modelcycle.training.service import TrainingService

KINDS = ("add", "recipe", "split", "train")
PARAMS = {
    "add": ("dataset", "path", "message"),
    "recipe": ("input", "file", "into", "message"),
    "split": ("input", "ratios", "stratify", "group", "seed", "names"),
    "train": ("spec", "executor"),
}
DEFAULT_FILE = "modelcycle.yaml"


@dataclass
class Stage:
    name: str
    kind: str
    params: dict[str, Any]
    after: list[str] = field(default_factory=list)
    reads: list[str] = field(default_factory=list)  # dataset names
    writes: list[str] = field(default_factory=list)


@dataclass
class Pipeline:
    name: str
    root: Path
    stages: dict[str, Stage]

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> Pipeline:
        p = Path(path or DEFAULT_FILE)
        if not p.exists():
            raise NotFoundError(
                f"{p} does not exist",
                hint=f"write a {DEFAULT_FILE} with `stages:` (see `modelcycle pipeline --help`)",
            )
        try:
            data = yaml.safe_load(p.read_text())
        except yaml.YAMLError as e:
            raise UsageError(f"{p} is not valid YAML: {e}", hint="fix the YAML syntax") from e
        return cls.from_dict(data, p.resolve().parent, str(p))

    @classmethod
    def from_dict(cls, data: Any, root: Path, where: str) -> Pipeline:
        if not isinstance(data, dict) or not isinstance(data.get("stages"), dict):
            raise UsageError(f"{where} needs a `stages:` mapping", hint="stages: {name: {...}}")
        for key in data:
            if key not in ("name", "stages"):
                raise UsageError(
                    f"{where}: unknown key {key!r}{suggest(str(key), ('name', 'stages'))}",
                    hint="a pipeline file has `name` and `stages`",
                )
        stages = {}
        for name, body in data["stages"].items():
            stages[str(name)] = _stage(str(name), body, root, f"{where}: stage {name!r}")
        pipeline = cls(str(data.get("name") or root.name), root, stages)
        pipeline.order()  # reject cycles and unknown `after` names now
        return pipeline

    def order(self) -> list[Stage]:
        """Stages in dependency order (ties in file order)."""
        writers: dict[str, str] = {}
        for s in self.stages.values():
            for ds in s.writes:
                writers.setdefault(ds, s.name)
        deps: dict[str, set[str]] = {}
        for s in self.stages.values():
            d = {writers[ds] for ds in s.reads if ds in writers and writers[ds] != s.name}
            for a in s.after:
                if a not in self.stages:
                    raise UsageError(
                        f"stage {s.name!r} runs after unknown stage {a!r}{suggest(a, self.stages)}",
                        hint=f"stages: {', '.join(self.stages)}",
                    )
                d.add(a)
            deps[s.name] = d
        out: list[Stage] = []
        done: set[str] = set()
        while len(out) < len(self.stages):
            ready = [n for n in self.stages if n not in done and deps[n] <= done]
            if not ready:
                left = sorted(set(self.stages) - done)
                raise UsageError(
                    f"the stages {', '.join(left)} depend on each other in a cycle",
                    hint="check their inputs, outputs and `after` lists",
                )
            out.append(self.stages[ready[0]])
            done.add(ready[0])
        return out


def _stage(name: str, body: Any, root: Path, where: str) -> Stage:
    if not isinstance(body, dict):
        raise UsageError(f"{where} must be a mapping", hint="e.g. {split: {input: NAME}}")
    kinds = [k for k in body if k in KINDS]
    extra = [k for k in body if k not in KINDS and k != "after"]
    if extra:
        raise UsageError(
            f"{where}: unknown key {extra[0]!r}{suggest(str(extra[0]), (*KINDS, 'after'))}",
            hint=f"a stage has one of {', '.join(KINDS)}, and optionally `after`",
        )
    if len(kinds) != 1:
        raise UsageError(f"{where} needs exactly one of {', '.join(KINDS)}", hint="")
    kind = kinds[0]
    params = body[kind] or {}
    if not isinstance(params, dict):
        raise UsageError(f"{where}: {kind} takes a mapping", hint="")
    for key in params:
        if key not in PARAMS[kind]:
            raise UsageError(
                f"{where}: {kind} has no parameter {key!r}{suggest(str(key), PARAMS[kind])}",
                hint=f"{kind} takes: {', '.join(PARAMS[kind])}",
            )
    after = body.get("after") or []
    stage = Stage(name, kind, dict(params), [str(a) for a in after])
    need = {
        "add": ("dataset", "path"),
        "recipe": ("input", "file"),
        "split": ("input",),
        "train": ("spec",),
    }[kind]
    for key in need:
        if key not in params:
            raise UsageError(f"{where}: {kind} needs {key!r}", hint=f"add `{key}:`")
    if kind == "add":
        stage.writes = [params["dataset"]]
    elif kind == "recipe":
        stage.reads = [params["input"]]
        stage.writes = [params.get("into") or params["input"]]
    elif kind == "split":
        stage.reads = [params["input"]]
        names = params.get("names") or ["train", "validation", "test"]
        stage.writes = [f"{params['input']}-{n}" for n in names]
    else:
        from modelcycle.training.spec import TrainSpec

        spec = TrainSpec.load(root / params["spec"])
        stage.reads = [r.split("@")[0] for r in (spec.train, spec.validation) if r]
    return stage


@dataclass
class StageResult:
    stage: str
    status: str  # ran / skipped
    outputs: dict[str, Any]
    fingerprint: str

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "status": self.status, "outputs": self.outputs}


class PipelineService:
    def __init__(
        self, store: PipelineStore, datasets: DatasetService, training: TrainingService
    ) -> None:
        self.store = store
        self.datasets = datasets
        self.training = training

    def run(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        stage: str | None = None,
        force: bool = False,
    ) -> dict[str, Any]:
        """Run the pipeline (or ``stage`` and what it depends on), skipping unchanged stages."""
        pipeline = Pipeline.load(path)
        order = pipeline.order()
        if stage is not None:
            if stage not in pipeline.stages:
                raise NotFoundError(
                    f"no stage {stage!r} in {pipeline.name}{suggest(stage, pipeline.stages)}",
                    hint=f"stages: {', '.join(pipeline.stages)}",
                )
            order = order[: [s.name for s in order].index(stage) + 1]
        run_id = self.store.start_run(pipeline.name)
        results: dict[str, Any] = {}
        status = "failed"
        try:
            for s in order:
                result = self._stage(pipeline, s, force)
                results[s.name] = result.to_dict()
            status = "finished"
        except Exception as e:
            results["error"] = str(e)
            raise
        finally:
            self.store.finish_run(run_id, status, results)
        return {"pipeline": pipeline.name, "run": run_id, "stages": list(results.values())}

    def _stage(self, pipeline: Pipeline, s: Stage, force: bool) -> StageResult:
        fingerprint = self._fingerprint(pipeline, s)
        last = self.store.stage_state(pipeline.name, s.name)
        if not force and last is not None and last[0] == fingerprint:
            return StageResult(s.name, "skipped", last[1], fingerprint)
        outputs = self._execute(pipeline, s)
        self.store.save_stage(pipeline.name, s.name, fingerprint, outputs)
        return StageResult(s.name, "ran", outputs, fingerprint)

    def _fingerprint(self, pipeline: Pipeline, s: Stage) -> str:
        parts = [s.kind, json.dumps(s.params, sort_keys=True, default=str), __version__]
        p = s.params
        files = {"add": p.get("path"), "recipe": p.get("file"), "train": p.get("spec")}.get(s.kind)
        if files:
            parts.append(self._content(pipeline.root / str(files)))
        for name in s.reads:
            latest = self.datasets.latest(name)
            parts.append(f"{name}={latest.content_hash if latest else 'missing'}")
        return hash_text(*parts)

    def _content(self, path: Path) -> str:
        if not path.exists():
            raise NotFoundError(f"{path} does not exist", hint="check the path in the pipeline")
        if path.is_file():
            return hash_file(path, path.stat().st_size)
        from modelcycle.core.statcache import stat_cache_path
        from modelcycle.data.files import current_manifest

        manifest = current_manifest(path, stat_cache_path(self.datasets.state_dir))
        return hash_bytes(manifest.to_bytes())

    def _execute(self, pipeline: Pipeline, s: Stage) -> dict[str, Any]:
        p, root = s.params, pipeline.root
        if s.kind == "add":
            r = self.datasets.add(p["dataset"], root / p["path"], message=p.get("message"))
            return {"versions": [r.version.ref]}
        if s.kind == "recipe":
            r = self.datasets.apply(
                p["input"], root / p["file"], into=p.get("into"), message=p.get("message")
            )
            return {"versions": [r.version.ref]}
        if s.kind == "split":
            ratios = p.get("ratios", "0.7,0.15,0.15")
            parts = self.datasets.split(
                p["input"],
                ratios if isinstance(ratios, str) else [float(x) for x in ratios],
                seed=int(p.get("seed", 0)),
                stratify=p.get("stratify"),
                group=p.get("group"),
                names=p.get("names"),
            )
            return {"versions": [v.ref for v in parts]}
        result = self.training.train(root / p["spec"], executor=p.get("executor"))
        return {"runs": [result.run_id], "metrics": result.to_dict()["metrics"]}

    def runs(self, name: str) -> list[dict[str, Any]]:
        return self.store.runs(name)
