"""Build hook: compiles modelcycle.core._native, the C helpers of folder adds, if it can.

`dataset add` and `dataset status` stat every file of a folder, match it against the
stat cache and read or write a manifest of every file; the C module does those loops in
a third to a quarter of the time Python takes (see src/modelcycle/core/_native.c). Without a C
compiler, or off Linux, or with MODELCYCLE_PURE_PYTHON=1 set, the package installs as
pure Python and uses the Python twins of those functions: slower on big folders, the
same results.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = Path("src/modelcycle/core/_native.c")


class NativeBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        root = Path(self.root)
        built = compile_native(root)
        if built is None:
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        if version != "editable":  # an editable install imports it from src/ as it is
            build_data["force_include"][str(built)] = str(built.relative_to(root / "src"))


def compile_native(root: Path) -> Path | None:
    """The built extension module, or None (with the reason said) when it cannot be."""
    source = root / SOURCE
    out = source.with_name("_native" + str(sysconfig.get_config_var("EXT_SUFFIX")))
    out.unlink(missing_ok=True)  # a build skipped or failed must not leave an older one
    if not sys.platform.startswith("linux") or os.environ.get("MODELCYCLE_PURE_PYTHON"):
        return None
    include = sysconfig.get_paths()["include"]
    flags = ["-O2", "-shared", "-fPIC", "-pthread", f"-I{include}", str(source), "-o", str(out)]
    # The compiler Python was built with, else the system's.
    compilers = [shlex.split(str(sysconfig.get_config_var("CC") or "cc")), ["cc"]]
    failures = []
    for compiler in compilers:
        try:
            subprocess.run([*compiler, *flags], check=True, capture_output=True, text=True)
            return out
        except (OSError, subprocess.CalledProcessError) as e:
            failures.append(getattr(e, "stderr", None) or str(e))
    print(
        "modelcycle: the C helpers were not built; os.scandir and ctypes are used instead:\n"
        + "\n".join(failures),
        file=sys.stderr,
    )
    return None
