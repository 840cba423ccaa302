"""The Grafana dashboard shipped for the model server queries only metrics it exposes."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families
from sklearn.linear_model import LogisticRegression, Ridge

from modelcycle.deploy.routes import Endpoint, Route, RouteTable, Target
from modelcycle.flavors.package import load_package, save_package
from modelcycle.serving import ServeSettings, create_app
from modelcycle.serving.models import ServedVersion

DASHBOARD = Path(__file__).resolve().parents[2] / "dashboards" / "grafana-serving.json"
METRIC = re.compile(r"\bmodelcycle_[a-z_]+\b")


def _queries(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [v for k, v in node.items() if k in ("expr", "definition") and isinstance(v, str)]
        return found + [q for v in node.values() for q in _queries(v)]
    if isinstance(node, list):
        return [q for v in node for q in _queries(v)]
    return []


def _exposed_samples(tmp_path: Path) -> set[str]:
    """Sample names on /metrics of a server that answered a classifier, a regressor (with
    a shadow) and batched requests."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    y = (x[:, 0] > 0).astype(int)
    loaded = {}
    for name, model in (("clf", LogisticRegression().fit(x, y)), ("reg", Ridge().fit(x, x[:, 1]))):
        save_package(model, tmp_path / name, input_example=x[:2])
        loaded[name] = load_package(tmp_path / name)
    clf, reg, reg_shadow = (
        Target(n, n, v, f"oid-{n}{v}") for n, v in (("clf", 1), ("reg", 1), ("reg", 2))
    )
    table = RouteTable(
        {
            "clf": Endpoint("clf", (Route(clf, 1.0),)),
            "reg": Endpoint("reg", (Route(reg, 1.0),), shadows=(reg_shadow,)),
        }
    )
    app = create_app(
        ServeSettings(refs=("clf", "reg"), max_batch_size=8),
        route_source=lambda: table,
        loader=lambda t: ServedVersion(t, loaded[t.model], threads=1),
    )

    async def main() -> str:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://serving") as client:
            await app.startup()
            try:
                for name in ("clf", "reg"):
                    r = await client.post(
                        f"/v1/models/{name}/predict", json={"inputs": x[:3].tolist()}
                    )
                    assert r.status_code == 200, r.text
                return (await client.get("/metrics")).text
            finally:
                await app.shutdown()

    text = asyncio.run(main())
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def test_the_dashboard_is_grafana_json_with_queries() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels) >= 8
    for panel in panels:
        assert panel["targets"] and all(t["expr"] for t in panel["targets"])
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"])


def test_every_metric_the_dashboard_queries_is_exposed(tmp_path: Path) -> None:
    queried = {m for q in _queries(json.loads(DASHBOARD.read_text())) for m in METRIC.findall(q)}
    assert len(queried) >= 10
    exposed = _exposed_samples(tmp_path)
    assert queried - exposed == set()
