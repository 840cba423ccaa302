"""Evaluating registered model versions on dataset versions, gating, and promoting.

An evaluation is computed once per (model version, dataset version, options) and stored:
its headline metrics in the metadata store, its full result (curves, importance,
slices) as a blob. Both sides are immutable and the computation is seeded, so comparing
models, rendering reports and checking gates read what is stored and never recompute.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelcycle.core.errors import (
    ConflictError,
    GateRefused,
    InputDataError,
    NotFoundError,
    UsageError,
)
from modelcycle.core.hashing import hash_bytes
from modelcycle.evaluation.gates import (
    Condition,
    GatePolicy,
    GateVerdict,
    check_champion,
    check_slices,
    check_thresholds,
)
from modelcycle.store.evaluations import EvaluationRow, EvaluationStore

if TYPE_CHECKING:
    import pandas as pd

    from modelcycle.blobs import BlobStore
    from modelcycle.data.service import DatasetService
    from modelcycle.evaluation.engine import EvaluationResult, SliceSpec
    from modelcycle.registry import RegistryService
    from modelcycle.store.metadata import VersionRecord
    from modelcycle.store.registry import ModelVersionRow

_TARGET_GUESSES = ("target", "label", "y", "class")


@dataclass(frozen=True)
class Evaluation:
    """A stored evaluation and its full result."""

    row: EvaluationRow
    result: EvaluationResult
    cached: bool

    @property
    def metrics(self) -> dict[str, Any]:
        return self.row.metrics

    def to_dict(self) -> dict[str, Any]:
        return {**self.row.to_dict(), "cached": self.cached, "result": self.result.to_dict()}


class EvaluationService:
    def __init__(
        self,
        store: EvaluationStore,
        registry: RegistryService,
        datasets: DatasetService,
        blobs: BlobStore,
    ) -> None:
        self.store = store
        self.registry = registry
        self.datasets = datasets
        self.blobs = blobs

    # -- evaluating --------------------------------------------------------------------
    def evaluate(
        self,
        model: str,
        data: str,
        *,
        target: str | None = None,
        slices: Sequence[SliceSpec | str] = (),
        importance: bool = True,
        trusted: Sequence[str] = (),
    ) -> Evaluation:
        """Evaluate ``model`` (``NAME@REF``) on the table version ``data`` (``NAME@REF``).

        ``target`` defaults to the column the model was trained to predict (recorded by
        ``modelcycle train``), else to the one data column the model does not take.
        """
        version = self.registry.resolve(model)
        if version.stage == "retired":
            raise ConflictError(
                f"{version.ref} is retired; its package may be gone",
                hint="its stored evaluations stay readable: `modelcycle model show`",
            )
        dataset = self.datasets.resolve(data)
        if dataset.kind != "table":
            raise UsageError(
                f"{dataset.ref} is a file dataset; evaluation needs a table version",
                hint="evaluate on a table dataset (CSV/Parquet) with the target column",
            )
        # scikit-learn loads on first use, not with the workspace (the CLI starts fast).
        from modelcycle.evaluation.engine import SliceSpec
        from modelcycle.evaluation.engine import evaluate as compute

        specs = [s if isinstance(s, SliceSpec) else SliceSpec.parse(s) for s in slices]
        columns = [c["name"] for c in dataset.schema or []]
        target = target or self._default_target(version, columns)
        if target not in columns:
            raise InputDataError(
                f"{dataset.ref} has no target column {target!r}",
                hint=f"its columns: {', '.join(columns)}; pass --target",
            )
        options = {
            "target": target,
            "slices": [_slice_text(s) for s in specs],
            "importance": importance,
        }
        key = hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:32]
        found = self.store.find(version.id, dataset.id, key)
        if found is not None:
            return Evaluation(found, self._result(found), cached=True)

        frame = self.datasets.to_pandas(dataset)
        loaded = self.registry.load(version.ref, trusted=tuple(trusted))
        inputs = self._inputs(version, frame, target, dataset)
        features = frame[inputs]
        for spec in specs:
            if spec.column is not None and spec.column not in frame.columns:
                raise UsageError(
                    f"slice column {spec.column!r} is not in {dataset.ref}",
                    hint=f"its columns: {', '.join(frame.columns)}",
                )

        def predict(x: pd.DataFrame) -> Any:
            return loaded.predict(x[inputs])

        def predict_proba(x: pd.DataFrame) -> Any:
            return loaded.predict_proba(x[inputs])

        task = self._task(version)
        started = time.perf_counter()
        result = compute(
            predict,
            features,
            frame[target],
            predict_proba=predict_proba
            if loaded.has_predict_proba and task != "regression"
            else None,
            task=task,
            classes=_classes(loaded),
            slices=specs,
            slice_frame=frame,
            importance=importance,
        )
        seconds = time.perf_counter() - started
        payload = json.dumps(result.to_dict(), allow_nan=False, default=str).encode()
        oid = hash_bytes(payload)
        with self.blobs.batch() as batch:
            batch.put_bytes(payload, oid)
        row = self.store.add(
            model_version_id=version.id,
            model_ref=version.ref,
            dataset_version_id=dataset.id,
            options_key=key,
            options=options,
            task=result.task,
            num_rows=result.n_rows,
            metrics=result.metrics,
            result_oid=oid,
            seconds=seconds,
        )
        return Evaluation(row, result, cached=False)

    def _result(self, row: EvaluationRow) -> EvaluationResult:
        from modelcycle.evaluation.engine import EvaluationResult

        return EvaluationResult.from_dict(json.loads(self.blobs.read_bytes(row.result_oid)))

    def _run_tags(self, version: ModelVersionRow) -> dict[str, str]:
        if not version.run_id:
            return {}
        try:
            return self.registry.runs.get(version.run_id).tags
        except NotFoundError:
            return {}

    def task_of(self, version: ModelVersionRow) -> str | None:
        """ "classification" or "regression" as training recorded it, else None."""
        return self._task(version)

    def target_of(self, version: ModelVersionRow, columns: list[str]) -> str:
        """The column of ``columns`` the version predicts (see `evaluate`)."""
        return self._default_target(version, columns)

    def inputs_of(
        self, version: ModelVersionRow, frame: pd.DataFrame, target: str | None
    ) -> list[str]:
        """The version's input columns in ``frame``, checked against its signature."""
        return self._inputs(version, frame, target or "", None)

    def _task(self, version: ModelVersionRow) -> str | None:
        task = self._run_tags(version).get("task")
        return task if task in ("classification", "regression") else None

    def _default_target(self, version: ModelVersionRow, columns: list[str]) -> str:
        recorded = self._run_tags(version).get("target")
        if recorded:
            return recorded
        taken = {c["name"] for c in (version.signature or {}).get("inputs", []) if c.get("name")}
        rest = [c for c in columns if c not in taken]
        if len(rest) == 1:
            return rest[0]
        guesses = [c for c in rest if c.lower() in _TARGET_GUESSES]
        if len(guesses) == 1:
            return guesses[0]
        raise UsageError(
            f"cannot tell which column of the data {version.ref} should predict",
            hint=f"pass --target (columns the model does not take: {', '.join(rest) or 'none'})",
        )

    def _inputs(
        self,
        version: ModelVersionRow,
        frame: pd.DataFrame,
        target: str,
        dataset: VersionRecord | None,
    ) -> list[str]:
        """The model's input columns, after checking the data has them with usable types."""
        from modelcycle.flavors.signature import Signature

        sig = Signature.from_dict(version.signature) if version.signature else None
        if sig is None or sig.kind != "columns":
            return [c for c in frame.columns if c != target]
        names = [s.name for s in sig.inputs]
        problems = sig.problems(frame)
        if problems:
            extra = [c for c in frame.columns if c not in names and c != target]
            raise InputDataError(
                f"{dataset.ref if dataset else 'the data'} does not match {version.ref}'s "
                "signature: " + "; ".join(problems),
                hint=f"the model takes {', '.join(s.describe() for s in sig.inputs)}"
                + (f"; columns it does not take: {', '.join(extra)}" if extra else ""),
                problems=problems,
                extra=extra,
            )
        return [str(n) for n in names]

    # -- reading -----------------------------------------------------------------------
    def list(self, model: str) -> list[EvaluationRow]:
        """Stored evaluations of a model version, oldest first."""
        return self.store.for_model_version(self.registry.resolve(model).id)

    def get(self, evaluation_id: int) -> Evaluation:
        row = self.store.get(evaluation_id)
        if row is None:
            raise NotFoundError(
                f"no evaluation {evaluation_id}",
                hint="`modelcycle model show NAME@REF` lists a version's evaluations",
            )
        return Evaluation(row, self._result(row), cached=True)

    def report(
        self,
        evaluation: Evaluation,
        dest: str | Path,
        *,
        champion: Evaluation | None = None,
    ) -> Path:
        """Write the self-contained HTML report of ``evaluation`` to ``dest``."""
        from modelcycle.evaluation.report import render_report

        html = render_report(
            evaluation.result,
            title=f"{evaluation.row.model_ref} on {evaluation.row.dataset_ref}",
            model_ref=evaluation.row.model_ref,
            dataset_ref=evaluation.row.dataset_ref,
            created_at=evaluation.row.created_at.isoformat(timespec="seconds"),
            champion=(champion.row.model_ref, champion.result) if champion else None,
        )
        out = Path(dest).expanduser()
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(html, encoding="utf-8")
        tmp.replace(out)
        return out

    # -- champions, gates, promotion ---------------------------------------------------
    def champion_of(self, name: str, ref: str = "production") -> ModelVersionRow | None:
        """The version a stage (``production``/``staging``) or an alias points at."""
        if ref in ("production", "staging"):
            held = [v for v in self.registry.versions(name) if v.stage == ref]
            return held[-1] if held else None
        try:
            return self.registry.resolve(f"{name}@{ref}")
        except NotFoundError:
            return None

    def gate(
        self,
        candidate: str,
        policy: GatePolicy | str | Path,
        data: str,
        *,
        trusted: Sequence[str] = (),
        slices: Sequence[SliceSpec | str] = (),
    ) -> GateVerdict:
        """Check ``candidate`` against ``policy`` on the evaluation data ``data``."""
        if not isinstance(policy, GatePolicy):
            policy = GatePolicy.load(policy)
        version = self.registry.resolve(candidate)
        specs = list(slices)
        ev = self.evaluate(version.ref, data, slices=specs, trusted=trusted)
        policy.check_metrics_known(set(ev.metrics))
        conditions: list[Condition] = check_thresholds(policy, ev.metrics)
        champion = self.champion_of(version.model, policy.champion_ref)
        champion_ref = None
        if policy.needs_champion:
            if champion is None or champion.id == version.id:
                why = (
                    f"no version of {version.model} is {policy.champion_ref} yet"
                    if champion is None
                    else f"{version.ref} is the {policy.champion_ref} version itself"
                )
                conditions.append(
                    Condition(
                        "champion", None, "beat the champion", f"{why}: nothing to beat", True
                    )
                )
            else:
                champion_ref = champion.ref
                old = self.evaluate(
                    champion.ref,
                    data,
                    target=ev.row.options["target"],
                    slices=specs,
                    trusted=trusted,
                )
                conditions += check_champion(policy, ev.metrics, champion.ref, old.metrics)
                if policy.slice_max_regression:
                    if not specs:
                        raise UsageError(
                            f"{policy.source} limits slice regressions but names no slices",
                            hint="add slices: {by: [COLUMN]} to the gate, or pass --slice",
                        )
                    conditions += check_slices(
                        policy, ev.result.slices, champion.ref, old.result.slices
                    )
        if policy.validation is not None:
            rules = policy.validation
            report = self.datasets.validate(data, rules if isinstance(rules, list) else str(rules))
            conditions.append(
                Condition(
                    "validation",
                    None,
                    f"evaluation data passes {report.rules} validation rules",
                    "all pass"
                    if report.ok
                    else f"{len(report.failures)} failed: "
                    + "; ".join(str(f.get("rule", f)) for f in report.failures[:3]),
                    report.ok,
                )
            )
        verdict = GateVerdict(version.ref, ev.row.dataset_ref, champion_ref, tuple(conditions))
        self.store.store.record_event(
            "model.gate",
            version.ref,
            {
                "passed": verdict.passed,
                "data": verdict.data,
                "champion": champion_ref,
                "failed": [c.requirement for c in verdict.failed],
            },
        )
        return verdict

    def promote(
        self,
        ref: str,
        to: str,
        *,
        gate: GatePolicy | str | Path | None = None,
        data: str | None = None,
        force: bool = False,
        reason: str | None = None,
        trusted: Sequence[str] = (),
    ) -> dict[str, Any]:
        """Move ``ref`` to stage ``to``, after the gate (when given) passes.

        A refused gate raises `GateRefused` listing the failed conditions, unless
        ``force`` (the override is recorded with the transition).
        """
        if gate is None:
            return self.registry.transition(ref, to, reason=reason, force=force)
        if data is None:
            raise UsageError(
                "a gate needs the evaluation data", hint="pass --data DATASET@REF (a test split)"
            )
        version = self.registry.resolve(ref)
        if version.stage == "retired":
            raise ConflictError(
                f"{version.ref} is retired and cannot move to {to}",
                hint="register the model again to use it",
            )
        verdict = self.gate(version.ref, gate, data, trusted=trusted, slices=_gate_slices(gate))
        if not verdict.passed and not force:
            failed = "; ".join(c.describe() for c in verdict.failed)
            raise GateRefused(
                f"the gate refused {version.ref} for {to}: {failed}",
                hint="improve the model (tune, more data) and evaluate again, "
                "or pass --force to override (recorded)",
                verdict=verdict.to_dict(),
            )
        note = "gate passed" if verdict.passed else "gate FAILED, forced"
        full_reason = f"{reason}; {note}" if reason else note
        result = self.registry.transition(version.ref, to, reason=full_reason, force=force)
        return {**result, "gate": verdict.to_dict()}


def _classes(loaded: Any) -> list[Any] | None:
    """The model's class order (the columns of ``predict_proba``), when it says."""
    try:
        classes = getattr(loaded.native, "classes_", None)
    except (AttributeError, NotImplementedError):
        return None
    return None if classes is None else list(classes)


def _gate_slices(gate: GatePolicy | str | Path) -> list[SliceSpec]:
    from modelcycle.evaluation.engine import SliceSpec

    policy = gate if isinstance(gate, GatePolicy) else GatePolicy.load(gate)
    return [SliceSpec.parse(s) for s in policy.slice_by]


def _slice_text(spec: SliceSpec) -> str:
    if spec.filter is not None:
        return f"filter:{spec.filter}"
    return f"column:{spec.column}"
