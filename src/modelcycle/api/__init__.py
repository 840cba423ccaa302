"""The public Python API."""

from modelcycle.api.workspace import Workspace

__all__ = ["Workspace"]
