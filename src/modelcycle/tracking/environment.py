"""What a run records about where it ran: code version, interpreter, packages, host.

Computed once per process (a thousand runs in one script do not ask git a thousand
times); the git state is read from the folder the process started in.
"""

from __future__ import annotations

import functools
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from typing import Any

# Packages whose versions matter for reproducing a training run, when installed.
PACKAGES = (
    "modelcycle",
    "numpy",
    "pandas",
    "polars",
    "pyarrow",
    "scipy",
    "scikit-learn",
    "xgboost",
    "lightgbm",
    "torch",
    "keras",
    "optuna",
    "ray",
)


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@functools.cache
def git_state() -> dict[str, Any]:
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return {}
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "git_commit": commit,
        "git_dirty": bool(status),
        "git_branch": _git("rev-parse", "--abbrev-ref", "HEAD"),
    }


@functools.cache
def packages() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


@functools.cache
def _static() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "cpu_count": os.cpu_count(),
    }


def capture() -> dict[str, Any]:
    """The environment of this process, for a new run."""
    return {
        **_static(),
        **git_state(),
        "source": os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else None,
        "packages": packages(),
    }
