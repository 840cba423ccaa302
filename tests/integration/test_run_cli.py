"""``modelcycle run …`` run as a user runs it, over runs a training script recorded."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from integration_support import cli_env, run_cli, run_json

# Start times are in milliseconds and a run this small takes less than one: the pause
# keeps "newest first" defined (runs started in the same millisecond have no order).
SCRIPT = """
import time

import modelcycle as mc

for i, model in enumerate(["xgb", "lgbm", "xgb"]):
    with mc.start_run(experiment="churn", name=f"try-{i}") as run:
        mc.log_params({"model": model, "depth": i + 2})
        for step in range(10):
            mc.log_metric("loss", (10 - step) / (i + 1), step=step)
        mc.log_metric("auc", 0.7 + i / 10)
    time.sleep(0.005)
"""


def test_run_commands(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    run_cli("init", ".", cwd=ws)
    (ws / "train.py").write_text(textwrap.dedent(SCRIPT))
    subprocess.run([sys.executable, "train.py"], cwd=ws, env=cli_env(), check=True, timeout=120)

    runs = run_json("run", "list", "--experiment", "churn", "--json", cwd=ws)
    assert [r["name"] for r in runs] == ["try-2", "try-1", "try-0"]  # newest first
    best = run_json(
        "run",
        "list",
        "--filter",
        "params.model = 'xgb'",
        "--order-by",
        "metrics.auc DESC",
        "--json",
        cwd=ws,
    )
    assert [r["name"] for r in best] == ["try-2", "try-0"]
    assert abs(best[0]["metrics"]["auc"] - 0.9) < 1e-12

    text = run_cli("run", "list", cwd=ws).stdout
    assert "experiment churn" in text and "try-1" in text and "finished" in text

    rid = best[0]["id"]
    shown = run_json("run", "show", rid[:8], "--json", cwd=ws)
    assert shown["id"] == rid and shown["params"] == {"model": "xgb", "depth": "4"}
    assert "train.py" in (shown["environment"].get("source") or "")
    points = run_json("run", "metric", rid[:8], "loss", "--json", cwd=ws)
    assert [p["step"] for p in points] == list(range(10))
    assert points[0]["value"] == 10 / 3

    cmp = run_json("run", "compare", best[0]["id"], best[1]["id"], "--json", cwd=ws)
    assert cmp["differing_params"] == ["depth"]

    run_cli("run", "move", rid[:8], "winners", cwd=ws)
    exps = {e["name"]: e["runs"] for e in run_json("run", "experiments", "--json", cwd=ws)}
    assert exps == {"churn": 2, "winners": 1}
    out = run_cli("run", "delete", rid[:8], cwd=ws).stdout
    assert "Deleted 1 run" in out
    assert len(run_json("run", "list", "--json", cwd=ws)) == 2

    bad = run_cli("run", "list", "--filter", "metrics.auc > high", cwd=ws, expect=2)
    assert "compares with a number" in bad.stderr and "Traceback" not in bad.stderr
    missing = run_cli("run", "show", "deadbeef00", cwd=ws, expect=3)
    assert "does not exist" in missing.stderr
