"""Keras 3 models in the ``.keras`` format, loaded in safe mode.

Keras reads its backend (``torch``, ``jax`` or ``tensorflow``) from ``KERAS_BACKEND`` once,
when ``keras`` is first imported: set the variable before anything imports keras. A
``.keras`` file holds weights and the architecture as configuration, not code, and loads
on any backend. Safe mode refuses lambda layers and other code in the file; custom
layers must be registered with ``keras.saving.register_keras_serializable`` by the code
that loads the package.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modelcycle.core.errors import UsageError
from modelcycle.flavors.base import (
    Flavor,
    framework_version,
    import_framework,
    loaded_module,
    pinned,
)
from modelcycle.flavors.inputs import to_numpy

FILE = "model.keras"
BACKENDS = {"torch": "torch", "jax": "jax", "tensorflow": "tensorflow", "numpy": "numpy"}


class KerasFlavor(Flavor):
    name = "keras"
    extra = "keras"
    modules = ("keras", "numpy")

    def handles(self, model: Any) -> bool:
        keras = loaded_module("keras")
        return keras is not None and isinstance(model, keras.Model)

    def save(
        self, model: Any, folder: Path, *, init_kwargs: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        keras = import_framework("keras", self.extra)
        model.save(folder / FILE)
        return {
            "file": FILE,
            "keras_version": framework_version("keras"),
            "backend": keras.backend.backend(),
        }

    def load(self, folder: Path, meta: Mapping[str, Any], *, trusted: Sequence[str] = ()) -> Any:
        keras = import_framework("keras", self.extra)
        path = folder / str(meta.get("file", FILE))
        try:
            return keras.saving.load_model(path, compile=False, safe_mode=True)
        except (ValueError, TypeError) as e:  # unsafe content, or a custom layer not registered
            raise UsageError(
                f"keras could not load {path} in safe mode: {e}",
                hint="models with Lambda layers hold Python code and are not loaded from "
                "packages; custom layers need keras.saving.register_keras_serializable in code "
                "imported before loading",
            ) from e

    def predict(self, model: Any, data: Any) -> Any:
        keras = import_framework("keras", self.extra)
        array = to_numpy(data)
        if np.issubdtype(array.dtype, np.floating):
            array = array.astype(keras.backend.floatx(), copy=False)
        # Calling the model skips predict()'s per-call data pipeline: much faster for one batch.
        # to_numpy, not keras.ops.convert_to_numpy: the latter goes through np.array(tensor),
        # which numpy 2 deprecates for torch tensors.
        return to_numpy(model(array, training=False))

    def requirements(self, model: Any) -> list[str]:
        keras = loaded_module("keras")
        backend = BACKENDS.get(keras.backend.backend()) if keras is not None else None
        return pinned(*self.modules, *([backend] if backend else []))
