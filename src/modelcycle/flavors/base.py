"""What a flavor is: save, load and predict one framework's models, without pickle.

A flavor never imports its framework at module level: ``import modelcycle.flavors`` stays
fast and works without any framework installed. Frameworks are imported inside the flavor's
methods through `import_framework`, which turns a missing install into a `UsageError` that
names the pip extra to install.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.metadata
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

from modelcycle.core.errors import UsageError


class Flavor(ABC):
    """One framework's way to store and run models.

    Subclasses set `name`, `extra` (the ``modelcycle[...]`` extra that installs the
    framework) and `modules` (the framework's import names, whose installed versions are
    pinned in a package's requirements).
    """

    name: ClassVar[str]
    extra: ClassVar[str | None] = None
    modules: ClassVar[tuple[str, ...]] = ()
    #: whether `save` uses ``init_kwargs`` (how to re-create the model's object on load)
    takes_init_kwargs: ClassVar[bool] = False

    @abstractmethod
    def handles(self, model: Any) -> bool:
        """True if this flavor can save ``model``. Must not import the framework."""

    @abstractmethod
    def save(
        self, model: Any, folder: Path, *, init_kwargs: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Write ``model`` into the existing empty ``folder``; return the flavor metadata.

        The metadata is stored in ``model.toml`` and handed back to `load`; keep it to
        strings, numbers, booleans and lists of them.
        """

    @abstractmethod
    def load(self, folder: Path, meta: Mapping[str, Any], *, trusted: Sequence[str] = ()) -> Any:
        """The native model saved in ``folder``. ``trusted`` names code the user trusts."""

    def native(self, model: Any) -> Any:
        """The framework's own object for what `load` returned (usually the same object)."""
        return model

    @abstractmethod
    def predict(self, model: Any, data: Any) -> Any:
        """The model's predictions for ``data`` (a numpy array or a list)."""

    def has_predict_proba(self, model: Any) -> bool:
        """True if `predict_proba` works for ``model``."""
        return False

    def predict_proba(self, model: Any, data: Any) -> Any:
        """Class probabilities for ``data``, one row per input row."""
        raise UsageError(
            f"{self.name} model {type(model).__name__} has no predict_proba",
            hint="use predict, or a classifier that can estimate probabilities",
        )

    def requirements(self, model: Any) -> list[str]:
        """Pinned requirements (``name==version``) for running ``model``."""
        return pinned(*self.modules)

    def needs_trust(self, meta: Mapping[str, Any]) -> list[str]:
        """Names of code that `load` imports and that the user must trust (see ``trust``)."""
        return []


# What importing a framework would import for nothing: {framework: {module: the heavy module
# it pulls in}}. skops.io builds its list of trusted scikit-learn classes at import time with
# sklearn.utils.all_estimators(), whose pkgutil.walk_packages imports every *package* of
# scikit-learn to list its contents, including the vendored array-API adapter for PyTorch,
# which imports torch (seconds). all_estimators skips everything under sklearn.externals, so
# its list is the same without the adapter.
_IMPORTED_FOR_NOTHING = {"skops.io": {"sklearn.externals.array_api_compat.torch": "torch"}}


def import_framework(module: str, extra: str | None) -> ModuleType:
    """Import ``module``, or say which extra installs it."""
    skipped = [
        name
        for name, heavy in _IMPORTED_FOR_NOTHING.get(module, {}).items()
        if module not in sys.modules and heavy not in sys.modules
    ]
    try:
        with _skipped(skipped):
            return importlib.import_module(module)
    except ImportError as e:
        hint = f"pip install 'modelcycle[{extra}]'" if extra else f"pip install {module}"
        raise UsageError(
            f"this model needs {module!r}, which is not installed ({e})", hint=hint
        ) from e


@contextlib.contextmanager
def _skipped(names: Sequence[str]) -> Iterator[None]:
    """Within the block, importing any of ``names`` that is not imported yet fails.

    ``None`` in ``sys.modules`` is Python's own marker for "do not import" (ImportError, which
    pkgutil.walk_packages passes over); it is removed afterwards, so a later import of the
    name works as usual. Used only while the heavy module is not loaded: no code can be
    using the skipped one meanwhile.
    """
    marked = [name for name in names if name not in sys.modules]
    for name in marked:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name in marked:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


def loaded_module(name: str) -> ModuleType | None:
    """``name`` if it has been imported already, without importing it."""
    return sys.modules.get(name)


def mro_modules(model: Any) -> set[str]:
    """Top-level packages of the classes ``model`` is an instance of."""
    return {cls.__module__.partition(".")[0] for cls in type(model).__mro__}


def distribution_of(module: str) -> str | None:
    """The installed distribution that provides top-level ``module`` (``sklearn`` → ``scikit-learn``)."""
    names = _packages_distributions().get(module.partition(".")[0])
    return names[0] if names else None


@functools.cache
def _packages_distributions() -> Mapping[str, list[str]]:
    # Scans every installed distribution (~0.1 s): once per process is enough.
    return importlib.metadata.packages_distributions()


def pinned(*modules: str) -> list[str]:
    """``dist==version`` for each installed module's distribution, without local labels.

    ``torch 2.13.0+cpu`` is pinned as ``torch==2.13.0``: local labels exist on one index only.
    """
    out: list[str] = []
    for module in modules:
        dist = distribution_of(module)
        if dist is None:
            continue
        version = importlib.metadata.version(dist).partition("+")[0]
        requirement = f"{dist}=={version}"
        if requirement not in out:
            out.append(requirement)
    return out


def framework_version(module: str) -> str:
    """The version of the installed distribution that provides ``module``."""
    dist = distribution_of(module)
    return importlib.metadata.version(dist) if dist else "unknown"
