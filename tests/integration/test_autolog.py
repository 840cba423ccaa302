"""Autolog records scikit-learn, XGBoost, LightGBM and PyTorch training by itself."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer

import modelcycle as mc


@pytest.fixture
def autologged(workspace: mc.Workspace) -> Iterator[mc.Workspace]:
    mc.set_workspace(workspace)
    assert set(mc.autolog(experiment="auto")) == {"sklearn", "xgboost", "lightgbm", "torch"}
    try:
        yield workspace
    finally:
        mc.autolog(disable=True)
        mc.set_workspace(None)


@pytest.mark.parametrize("backend", ["sqlite+local"], indirect=True)
def test_autolog_each_framework(autologged: mc.Workspace) -> None:
    import lightgbm as lgb
    import torch
    import xgboost as xgb
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    ws = autologged
    x, y = load_breast_cancer(return_X_y=True)

    pipe = make_pipeline(StandardScaler(), LogisticRegression(C=0.5))
    pipe.fit(x, y)  # one run for the pipeline, not one per step
    [run] = ws.runs.search("auto")
    assert run.status == "finished" and run.tags["autolog"] == "sklearn"
    assert run.metrics["training_score"] > 0.9
    assert "steps" in run.params and "models/model/model.toml" in [p for p, _ in run.artifacts()]

    with mc.start_run(experiment="auto", name="boosting") as outer:
        booster = xgb.train(
            {"objective": "binary:logistic", "eval_metric": "logloss"},
            xgb.DMatrix(x, label=y),
            num_boost_round=5,
            evals=[(xgb.DMatrix(x, label=y), "train")],
        )
    assert booster.num_boosted_rounds() == 5
    stored = ws.runs.get(outer.id)
    assert [p.step for p in stored.metric_history("train-logloss")] == [0, 1, 2, 3, 4]
    assert stored.params["objective"] == "binary:logistic"

    clf = lgb.LGBMClassifier(n_estimators=4, verbosity=-1)
    clf.fit(x, y, eval_X=(x,), eval_y=(y,))
    lgb_run = next(r for r in ws.runs.search("auto") if r.tags.get("autolog") == "lightgbm")
    history = ws.runs.get(lgb_run.id).metric_history("valid_0-binary_logloss")
    assert len(history) == 4 and history[-1].value < history[0].value

    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    with mc.start_run(experiment="auto", name="torch") as trun:
        for _ in range(3):
            opt.zero_grad()
            model(torch.ones(2, 3)).sum().backward()
            opt.step()
            sched.step()
    lrs = [p.value for p in ws.runs.get(trun.id).metric_history("lr")]
    assert lrs == pytest.approx([0.1, 0.05, 0.025])

    mc.autolog(disable=True)
    before = len(ws.runs.search("auto"))
    LogisticRegression().fit(x[:, :3], y)
    assert len(ws.runs.search("auto")) == before
    assert not np.isnan(x).any()
