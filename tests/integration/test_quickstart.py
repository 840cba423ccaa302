"""``modelcycle quickstart`` walks the lifecycle and leaves a workspace a user can explore."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from integration_support import run_cli

import modelcycle as mc


def test_quickstart_walks_the_data_lifecycle(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    out = run_cli("quickstart", root, cwd=tmp_path).stdout
    for heading in (
        "Add the raw CSV",
        "Clean it",
        "Split",
        "Label it",
        "Train a model",
        "evaluate them on the test split",
        "gate.yaml passed",
        "Lineage of cancer@",
        "Serve the champion",
        "Close the loop",
        "ALERT",
        "Lineage of the final champion",
        "fsck",
    ):
        assert heading in out, heading
    assert "Traceback" not in out

    ws = mc.Workspace.open(root)
    try:
        labeled = ws.datasets.resolve("cancer-labeled")
        df = ws.datasets.load(labeled)
        cleaned = ws.datasets.resolve("cancer@2")
        assert df.height == cleaned.num_rows
        assert set(df["label"].drop_nulls()) == {"malignant", "benign"}
        # Ben's slips are ties between two annotators: unlabeled unless a reviewer decided.
        assert 0 < df["label"].null_count() < df.height // 10
        assert labeled.step["project"] == "diagnosis"
        assert labeled.step["models"] == ["radius-rule"]
        assert [p.ref for p, _ in ws.store.parents(labeled.id)] == ["cancer@2"]
        runs = ws.runs.search("cancer")
        parents = [r for r in runs if r.parent_id is None]
        assert {r.name for r in parents} == {"random-forest", "trees-search"}
        search = next(r for r in parents if r.name == "trees-search")
        assert len([r for r in runs if r.parent_id == search.id]) == 8
        assert ws.runs.get(search.id).inputs()[0][0] == "cancer-train@1"
        # Both models registered and evaluated on the test split; one is in production,
        # and its printed lineage reaches the raw CSV.
        versions = ws.models.versions("cancer")
        assert [v.version for v in versions] == [1, 2, 3]
        for v in versions[:2]:
            [ev] = ws.evaluations.list(v.ref)
            assert ev.dataset_ref == "cancer-test@1" and ev.metrics["roc_auc"] > 0.9
            assert (root / "reports" / f"cancer-{v.version}.html").stat().st_size > 10_000
        first = next(v for v in versions[:2] if v.stage in ("production", "archived"))
        assert f"model {first.ref}" in out and "train: cancer-train@1" in out
        assert "cancer@1" in out.split("Lineage of")[1] and "added from" in out
        # The champion was served over HTTP: every answer matched the model in-process,
        # the metrics counted the requests, and the predictions were logged.
        served = out.split("Serve the champion")[1]
        assert "84/84 match the model in-process" in served.replace(",", "")
        assert 'modelcycle_requests_total{endpoint="invocations",model="cancer"' in served
        logged = ws.deployments.predictions("cancer").filter(pl.col("deployment").is_null())
        assert logged.height >= 84 and set(logged["version"].to_list()) == {first.version}
        # The loop: drifted traffic alerted, the retrained cancer@3 passed its gate and
        # canary and is the champion now; its training data holds the feedback.
        [alert] = ws.monitors.alerts(monitor="cancer-drift")
        assert alert.rule == "drift_share > 0.3"
        [run] = ws.maintenance.list()
        assert run.state == "promoted" and run.candidate == "cancer@3", run.reason
        assert run.trigger["alert"] == alert.id
        assert ws.models.resolve("cancer@champion").version == 3
        assert ws.models.resolve("cancer@3").stage == "production"
        retrained = run.steps[0]
        assert retrained["feedback_rows"] > 0 and retrained["data"] == "cancer-train@2"
        grown = ws.datasets.resolve("cancer-train@2")
        base = ws.datasets.resolve("cancer-train@1")
        assert grown.num_rows == base.num_rows + retrained["feedback_rows"]
        final = out.split("Lineage of the final champion")[1]
        assert "model cancer@3" in final and "feedback-labelled traffic" in final
        assert "none failed" in out.split("Close the loop")[1]
        assert "web UI at http://127.0.0.1:8080" in out
        assert ws.fsck().ok
    finally:
        ws.close()
