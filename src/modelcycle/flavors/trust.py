"""Which code a model package may run when it is loaded.

Loading a package never runs code the user has not trusted. A package names code in two
ways: types and functions inside a skops file (scikit-learn models), and import paths such
as ``mypkg.nets:Net`` in ``model.toml`` (PyTorch state dicts, python_function models).
Importing and constructing a named object is running code, so both are refused unless
trusted. Trusted are:

1. what the flavor's framework provides: for skops files, what skops trusts by default plus
   *classes* defined in scikit-learn, NumPy or SciPy (outside their file-reading and testing
   modules); for PyTorch, classes under ``torch.nn``;
2. what the caller passes as ``trusted``: exact names (``mypkg.nets.Net`` or
   ``mypkg.nets:Net``) or a module and everything below it (``mypkg.*``).

What a package says about itself is never a reason to trust it. ``model.toml`` lists the
names a package needs (``needs_trust``) so that a caller can show them, ask, and remember the
answer in a place the package cannot edit (the registry records them when a version is
registered); a package copied from elsewhere with an edited ``model.toml`` gains nothing.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Iterable

from modelcycle.core.errors import UsageError

#: libraries whose classes a skops file may contain without the caller's say-so
SKOPS_LIBRARIES = ("sklearn", "numpy", "scipy")
# Modules that read files, load native code or exist for tests: never trusted implicitly.
_NEVER_IMPLICIT = (
    "numpy.ctypeslib",
    "numpy.distutils",
    "numpy.f2py",
    "numpy.lib.format",
    "numpy.lib.npyio",
    "numpy.testing",
    "scipy.io",
    "sklearn.datasets",
    "sklearn.utils._testing",
)


def normalize(name: str) -> str:
    """``mypkg.nets:Net`` → ``mypkg.nets.Net``."""
    return name.strip().replace(":", ".")


def is_trusted(name: str, trusted: Iterable[str]) -> bool:
    """True if ``name`` is one of ``trusted`` or below a ``module.*`` entry."""
    name = normalize(name)
    for entry in map(normalize, trusted):
        if entry.endswith(".*"):
            module = entry[:-2]
            if name == module or name.startswith(module + "."):
                return True
        elif name == entry:
            return True
    return False


def untrusted(names: Iterable[str], trusted: Iterable[str]) -> list[str]:
    """The names in ``names`` that ``trusted`` does not cover, sorted."""
    trusted = list(trusted)
    return sorted({n for n in names if not is_trusted(n, trusted)})


def is_library_class(name: str, libraries: Iterable[str] = SKOPS_LIBRARIES) -> bool:
    """True if dotted ``name`` resolves to a class defined in one of ``libraries``.

    Only modules of those libraries are imported to find out.
    """
    name = normalize(name)
    if name.partition(".")[0] not in set(libraries):
        return False
    if any(name == m or name.startswith(m + ".") for m in _NEVER_IMPLICIT):
        return False
    obj = _resolve(name)
    return isinstance(obj, type) and obj.__module__.partition(".")[0] in set(libraries)


def _resolve(name: str) -> object | None:
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                obj: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def refuse(names: list[str], where: str) -> UsageError:
    """The error for loading a package whose ``names`` are not trusted."""
    listed = ", ".join(names)
    return UsageError(
        f"{where} names code that is not trusted: {listed}; loading it would import and run it",
        hint=f"if you trust where this package comes from, load it with trusted={names!r}",
        untrusted=names,
    )
