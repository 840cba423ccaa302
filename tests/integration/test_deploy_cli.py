"""``modelcycle deploy …`` commands and the Kubernetes export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from integration_support import LOCAL
from test_deploy import deployments_of, register_iris
from typer.testing import CliRunner

import modelcycle as mc
from modelcycle.cli.deploy import app
from modelcycle.core.errors import ConflictError, NotFoundError, UsageError
from modelcycle.deploy.predlog import PredictionLogger
from modelcycle.store.deployments import DeploymentStore

EMBEDDED = pytest.mark.parametrize("backend", [LOCAL], indirect=True)


def _by_kind(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in docs}


def test_kubernetes_export_is_valid_and_consistent(workspace: mc.Workspace, tmp_path: Path) -> None:
    ws = workspace
    register_iris(ws)
    svc = deployments_of(ws)
    svc.create("Iris_Live", "iris@1")
    svc.route("Iris_Live", {"iris@1": 10, "iris@2": 90})
    svc.shadow("Iris_Live", ["iris@3"])

    out = tmp_path / "k8s"
    result = svc.export_kubernetes("Iris_Live", out, image="registry.example/iris:2")
    assert result.serves == "iris@2"  # the primary route: the largest weight
    assert result.notes == [
        "route iris@1 (weight 10) is not in the image",
        "shadow iris@3 is not in the image",
    ]
    assert (out / "model" / "model.toml").is_file()
    assert sorted(p.name for p in out.iterdir()) == ["Dockerfile", "kubernetes.yaml", "model"]
    assert not list(tmp_path.glob(".*mc-tmp"))

    text = (out / "kubernetes.yaml").read_text()
    assert "&id" not in text and "*id" not in text  # plain YAML, no anchors
    docs = list(yaml.safe_load_all(text))
    kinds = _by_kind(docs)
    assert [(d["apiVersion"], d["kind"]) for d in docs] == [
        ("apps/v1", "Deployment"),
        ("v1", "Service"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ]
    for doc in docs:
        assert doc["metadata"]["name"] == "iris-live"  # a valid Kubernetes name
    deployment, service, hpa = (
        kinds["Deployment"],
        kinds["Service"],
        kinds["HorizontalPodAutoscaler"],
    )

    spec = deployment["spec"]
    pod_labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= pod_labels.items()
    assert service["spec"]["selector"].items() <= pod_labels.items()
    [container] = spec["template"]["spec"]["containers"]
    assert container["image"] == "registry.example/iris:2"
    [port] = container["ports"]
    assert port["containerPort"] == 8000
    [service_port] = service["spec"]["ports"]
    assert service_port["targetPort"] == port["containerPort"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8000}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": 8000}
    assert container["resources"]["requests"]["cpu"]  # HPA utilization needs a CPU request
    annotations = spec["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "8000"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert annotations["modelcycle/model"] == "iris@2"
    assert annotations["modelcycle/package"] == ws.models.resolve("iris@2").manifest_oid

    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        "apps/v1",
        "Deployment",
        "iris-live",
    )
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    [metric] = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"

    dockerfile = (out / "Dockerfile").read_text()
    assert "COPY model /srv/model" in dockerfile and "EXPOSE 8000" in dockerfile
    cmd = next(line for line in dockerfile.splitlines() if line.startswith("CMD "))
    assert json.loads(cmd[4:]) == [
        "modelcycle",
        "serve",
        "/srv/model",
        "--host",
        "0.0.0.0",
        "--port",
        "8000",
    ]
    user = next(line for line in dockerfile.splitlines() if line.startswith("USER "))
    assert int(user.split()[1]) == container["securityContext"]["runAsUser"]

    with pytest.raises(ConflictError, match="not empty"):
        svc.export_kubernetes("Iris_Live", out)
    with pytest.raises(UsageError):
        svc.export_kubernetes("Iris_Live", tmp_path / "other", replicas=20, max_replicas=3)
    assert not (tmp_path / "other").exists()


@EMBEDDED
def test_deploy_commands(
    workspace: mc.Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = workspace
    register_iris(ws)
    ws.models.set_alias("iris", "champion", 1)
    monkeypatch.setenv("MODELCYCLE_WORKSPACE", str(ws.root))
    runner = CliRunner()

    def ok(*args: str) -> str:
        result = runner.invoke(app, list(args))
        assert result.exit_code == 0, (args, result.output, result.exception)
        return result.stdout

    def refused(*args: str) -> BaseException:
        result = runner.invoke(app, list(args))
        assert result.exit_code != 0 and result.exception is not None, (args, result.output)
        return result.exception

    created = json.loads(
        ok("create", "live", "--model", "iris@champion", "--sticky-header", "x-user", "--json")
    )
    assert created["routes"][0]["version"] == 1 and created["sticky_header"] == "x-user"
    assert "iris@2" in ok("route", "live", "iris@1=90", "iris@2=10", "-m", "canary")
    assert "iris@3" in ok("shadow", "live", "iris@3")
    status = json.loads(ok("status", "live", "--json"))
    assert [(r["ref"], r["share"]) for r in status["routes"]] == [
        ("iris@1", 0.9),
        ("iris@2", 0.1),
    ]
    assert [s["ref"] for s in status["shadows"]] == ["iris@3"]
    text = ok("status", "live")
    assert "revision" in text and "canary" in text
    assert [d["name"] for d in json.loads(ok("list", "--json"))] == ["live"]
    assert "live" in ok("list")

    assert isinstance(refused("route", "live", "iris@1=90", "iris@2"), UsageError)
    assert isinstance(refused("route", "live", "iris@1=0"), UsageError)
    assert isinstance(refused("route", "live", "iris@9=1"), NotFoundError)
    assert isinstance(refused("status", "nope"), NotFoundError)
    assert isinstance(refused("shadow", "live"), UsageError)

    ok("shadow", "live", "--remove")
    ok("route", "live", "iris@2")  # one bare ref: all traffic
    assert "Rolled back live" in ok("rollback", "live")
    kinds = [h["kind"] for h in json.loads(ok("history", "live", "--json"))]
    assert kinds == ["created", "route", "shadow", "shadow", "route", "rollback"]
    assert "rollback" in ok("history", "live")

    with PredictionLogger(ws.blobs, DeploymentStore(ws.store), deployment="live") as logger:
        for i in range(30):
            logger.log({"request_id": f"r{i}", "model": "iris", "version": 1, "prediction": i})
    rows = json.loads(ok("predictions", "live", "--limit", "5", "--json"))
    assert [r["request_id"] for r in rows] == [f"r{i}" for i in range(25, 30)]
    assert "r29" in ok("predictions", "live", "--since", "1h")
    assert "No predictions" in ok("predictions", "live", "--until", "2000-01-01")
    assert isinstance(refused("predictions", "live", "--since", "lately"), UsageError)

    labels = tmp_path / "labels.jsonl"
    labels.write_text('{"request_id": "r1", "label": 1}\n\n{"request_id": "r2", "label": 0}\n')
    assert "Added 2 feedback" in ok("feedback", str(labels))
    labels.write_text('{"request_id": "r1", "label": 1}\nnot json\n')
    assert isinstance(refused("feedback", str(labels)), UsageError)

    exported = json.loads(ok("export", "live", "--kubernetes", str(tmp_path / "k8s"), "--json"))
    assert exported["serves"] == "iris@1" and Path(exported["manifests"]).is_file()

    assert "Deleted deployment live" in ok("delete", "live")
    assert json.loads(ok("list", "--json")) == []
    assert "No deployments yet" in ok("list")
