"""Kubernetes manifests and an image build context for a deployment.

The export is self-contained: the image holds the package of the deployment's primary
route (the route with the largest weight) and serves it with ``modelcycle serve``; the
cluster needs no access to the workspace. Other routes and shadows are not in the image
(the export says so): an image serves one version, and a canary in a cluster is a second
export behind the same Service, or a mesh's traffic split.

::

    DEST/Dockerfile          FROM python:<the version that saved the model>-slim
    DEST/model/              the package (model.toml, model files, requirements.txt)
    DEST/kubernetes.yaml     Deployment (apps/v1), Service (v1),
                             HorizontalPodAutoscaler (autoscaling/v2)

``docker build -t IMAGE DEST && docker push IMAGE && kubectl apply -f DEST/kubernetes.yaml``.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from modelcycle import __version__
from modelcycle.core.errors import ConflictError, UsageError
from modelcycle.deploy.routes import Endpoint, Route, Target

if TYPE_CHECKING:
    from modelcycle.registry import RegistryService

PORT = 8000
READY_PATH = "/v2/health/ready"
LIVE_PATH = "/v2/health/live"
METRICS_PATH = "/metrics"
RUN_AS_USER = 10001
_K8S_NAME_MAX = 63


@dataclass(frozen=True)
class KubernetesExport:
    folder: Path
    manifests: Path
    dockerfile: Path
    package: Path
    image: str
    serves: str  # the version in the image, e.g. "churn@7"
    notes: list[str] = field(default_factory=list)  # what the image does not carry

    def to_dict(self) -> dict[str, Any]:
        return {
            "folder": str(self.folder),
            "manifests": str(self.manifests),
            "dockerfile": str(self.dockerfile),
            "package": str(self.package),
            "image": self.image,
            "serves": self.serves,
            "notes": self.notes,
        }


def k8s_name(name: str) -> str:
    """``name`` as a Kubernetes object name (RFC 1123 label: lowercase, digits, '-')."""
    out = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:_K8S_NAME_MAX].rstrip("-")
    if not out:
        raise UsageError(
            f"{name!r} cannot be made a Kubernetes name",
            hint="use a deployment name with letters or digits",
        )
    return out


def _named(target: Target) -> str:
    return target.ref if target.ref == target.resolved else f"{target.ref} = {target.resolved}"


def primary(endpoint: Endpoint) -> Route:
    """The route with the largest weight (the first of equals)."""
    return max(endpoint.routes, key=lambda r: r.weight)


def export(
    endpoint: Endpoint,
    registry: RegistryService,
    dest: Path,
    *,
    image: str | None = None,
    replicas: int = 2,
    max_replicas: int = 10,
    cpu_utilization: int = 70,
) -> KubernetesExport:
    """Write the build context and manifests for ``endpoint`` into ``dest`` (new or
    empty), atomically: a failure leaves nothing behind."""
    from modelcycle.flavors.package import read_package

    if not 1 <= replicas <= max_replicas:
        raise UsageError(
            f"replicas {replicas} and max replicas {max_replicas} do not fit",
            hint="use 1 <= replicas <= max replicas",
        )
    if not 1 <= cpu_utilization <= 100:
        raise UsageError(f"CPU utilization {cpu_utilization}% is not in 1..100", hint="")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ConflictError(f"{dest} exists and is not empty", hint="choose a new or empty folder")
    name = k8s_name(endpoint.name)
    route = primary(endpoint)
    target = route.target
    image = image or f"{name}:{target.model}-v{target.version}"
    notes = [
        f"route {_named(r.target)} (weight {r.weight:g}) is not in the image"
        for r in endpoint.routes
        if r is not route
    ] + [f"shadow {_named(s)} is not in the image" for s in endpoint.shadows]

    tmp = dest.with_name(f".{dest.name}.mc-tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        info = read_package(registry.package(target.resolved, tmp / "model"))
        (tmp / "Dockerfile").write_text(
            dockerfile(
                python_version=str(info.meta.get("python_version", "3.11")),
                trusted=info.needs_trust,
            ),
            encoding="utf-8",
        )
        docs = manifests(
            deployment=endpoint.name,
            name=name,
            image=image,
            target_ref=target.resolved,
            manifest_oid=target.manifest_oid,
            replicas=replicas,
            max_replicas=max_replicas,
            cpu_utilization=cpu_utilization,
        )
        (tmp / "kubernetes.yaml").write_text(
            yaml.safe_dump_all(docs, sort_keys=False), encoding="utf-8"
        )
        if dest.exists():
            dest.rmdir()
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return KubernetesExport(
        folder=dest,
        manifests=dest / "kubernetes.yaml",
        dockerfile=dest / "Dockerfile",
        package=dest / "model",
        image=image,
        serves=target.resolved,
        notes=notes,
    )


def dockerfile(*, python_version: str, trusted: tuple[str, ...] | list[str] = ()) -> str:
    """A Dockerfile for a context holding the package in ``model/``."""
    major_minor = ".".join(python_version.split(".")[:2])
    command = ["modelcycle", "serve", "/srv/model"]
    for name in trusted:
        command += ["--trust", name]
    command += ["--host", "0.0.0.0", "--port", str(PORT)]
    quoted = ", ".join(f'"{part}"' for part in command)
    return "\n".join(
        [
            f"# Generated by modelcycle {__version__}: serves the model package in model/.",
            "#   docker build -t IMAGE . && docker push IMAGE",
            f"FROM python:{major_minor}-slim",
            "ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp",
            f'ARG MODELCYCLE="modelcycle=={__version__}"',
            "WORKDIR /srv",
            "COPY model/requirements.txt /srv/requirements.txt",
            'RUN pip install --no-cache-dir "$MODELCYCLE" -r /srv/requirements.txt',
            "COPY model /srv/model",
            f"USER {RUN_AS_USER}",
            f"EXPOSE {PORT}",
            f"CMD [{quoted}]",
            "",
        ]
    )


def manifests(
    *,
    deployment: str,
    name: str,
    image: str,
    target_ref: str,
    manifest_oid: str,
    replicas: int,
    max_replicas: int,
    cpu_utilization: int,
) -> list[dict[str, Any]]:
    """Deployment, Service and HorizontalPodAutoscaler for one served version."""
    labels = {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/managed-by": "modelcycle",
    }
    scrape = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(PORT),
        "prometheus.io/path": METRICS_PATH,
    }
    about = {
        "modelcycle/deployment": deployment,
        "modelcycle/model": target_ref,
        "modelcycle/package": manifest_oid,
    }
    container = {
        "name": "server",
        "image": image,
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "readinessProbe": {
            "httpGet": {"path": READY_PATH, "port": PORT},
            "initialDelaySeconds": 5,
            "periodSeconds": 5,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": LIVE_PATH, "port": PORT},
            "initialDelaySeconds": 15,
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        # The autoscaler's CPU utilization is relative to the request.
        "resources": {
            "requests": {"cpu": "500m", "memory": "512Mi"},
            "limits": {"memory": "2Gi"},
        },
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "allowPrivilegeEscalation": False,
        },
    }
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "labels": dict(labels), "annotations": dict(about)},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
                "template": {
                    "metadata": {"labels": dict(labels), "annotations": {**scrape, **about}},
                    "spec": {"containers": [container]},
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "labels": dict(labels), "annotations": dict(scrape)},
            "spec": {
                "selector": {"app.kubernetes.io/name": name},
                "ports": [{"name": "http", "port": PORT, "targetPort": PORT, "protocol": "TCP"}],
            },
        },
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name, "labels": dict(labels)},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "minReplicas": replicas,
                "maxReplicas": max_replicas,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {
                                "type": "Utilization",
                                "averageUtilization": cpu_utilization,
                            },
                        },
                    }
                ],
            },
        },
    ]
