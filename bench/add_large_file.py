"""W2: version one 2 GiB file -- `dvc add` vs `modelcycle dataset add` vs plain `cp`.

Data: $BENCH_HOME/data/fileB.bin (2 GiB of random bytes), made by
../shared/bench/peers/w2_gen_data.py. Per repetition, each tool gets a fresh repository
with the file copied in untimed (warm page cache), then one timed process:

  dvc         git init + dvc init (cold state DB), `dvc add fileB.bin` (add_fileB)
  modelcycle  `modelcycle init .` (untimed), `modelcycle dataset add big ./fileB.bin`
  cp          `cp fileB.bin copy.bin` in the same folder (same filesystem), no sync:
              the floor for any tool that keeps its own copy of the bytes
  cp+sync     the same, then `sync copy.bin` (what a tool that fsyncs its blobs pays)

A single non-table file is a one-file file dataset. Before timing, a 1 MiB probe file is
added in a scratch workspace; if plain `dataset add` rejects it, `--format files` is
tried and used (the script says so). The tool that goes first alternates between
repetitions. Targets: modelcycle >= 4x faster than DVC and within 2x of cp.
The last line is `SUMMARY bench_add_large_file ...`.

    python bench/add_large_file.py [--reps 5] [--data DIR] [--dvc PATH] [--modelcycle PATH]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from _common import (
    Sample,
    StepFailed,
    copy_in,
    find_dvc,
    find_modelcycle,
    last_line,
    median,
    new_dvc_repo,
    new_mc_workspace,
    parse_args,
    print_table,
    ratio,
    require_w2_data,
    run,
    save_results,
    scratch,
    timed,
    tool_order,
    tool_version,
)

DVC_TARGET = 4.0
CP_TARGET = 2.0


def probe_add_args(mc: str, data: Path, keep: bool) -> list[str]:
    """Extra `dataset add` arguments modelcycle needs for a single binary file."""
    errors = []
    for extra in ([], ["--format", "files"]):
        with scratch(data, "add_large_file-probe", keep, 0) as work:
            new_mc_workspace(work / "ws", mc)
            (work / "ws" / "probe.bin").write_bytes(os.urandom(1 << 20))
            try:
                run([mc, "dataset", "add", "probe", "./probe.bin", *extra], work / "ws")
            except StepFailed as e:
                errors.append(str(e))
                continue
        if extra:
            print(f"NOTE: `dataset add` rejected a single binary file; using {' '.join(extra)}")
        return extra
    sys.exit("modelcycle could not add a single binary file:\n" + "\n".join(errors))


def main() -> None:
    args = parse_args(__doc__ or "")
    dvc, mc = find_dvc(args.dvc), find_modelcycle(args.modelcycle)
    require_w2_data(args.data)
    file_b = args.data / "fileB.bin"
    b_bytes = file_b.stat().st_size
    extra = probe_add_args(mc, args.data, args.keep)
    meta = {
        "dvc": tool_version([dvc, "--version"]),
        "modelcycle": tool_version([mc, "--version"]),
        "modelcycle_extra_args": extra,
        "reps": args.reps,
        "bytes": b_bytes,
    }
    print(f"bench_add_large_file  {meta}  cores={os.cpu_count()}  load1={os.getloadavg()[0]:.2f}")

    commands = {
        "dvc": [dvc, "add", "fileB.bin"],
        "modelcycle": [mc, "dataset", "add", "big", "./fileB.bin", *extra],
        "cp": ["cp", "fileB.bin", "copy.bin"],
        "cp+sync": ["sh", "-c", "cp fileB.bin copy.bin && sync copy.bin"],
    }
    samples: list[Sample] = []
    outputs: dict[str, str] = {}
    settle = max(args.settle, 5.0)  # deleting 4 GiB leaves discard/writeback work behind
    for rep in range(1, args.reps + 1):
        for tool in tool_order(rep, list(commands)):
            with scratch(args.data, f"add_large_file-{tool}", args.keep, settle) as work:
                repo = work / "repo"
                if tool == "dvc":
                    new_dvc_repo(repo, dvc)
                elif tool == "modelcycle":
                    new_mc_workspace(repo, mc)
                else:
                    repo.mkdir()
                copy_in(file_b, repo / "fileB.bin")
                log = work / "add.log"
                samples.append(
                    timed(commands[tool], repo, log, tool=tool, step="add_fileB", rep=rep)
                )
                outputs.setdefault(tool, last_line(log))

    print_table(samples, {"add_fileB": b_bytes})
    for tool in ("dvc", "modelcycle"):
        print(f"{tool} said (rep 1): {outputs[tool]}")
    print(f"results: {save_results(args.data, 'add_large_file', meta, samples)}")
    dvc_med = median(samples, "dvc", "add_fileB")
    mc_med = median(samples, "modelcycle", "add_fileB")
    cp_med = median(samples, "cp", "add_fileB")
    cps_med = median(samples, "cp+sync", "add_fileB")
    print(
        f"SUMMARY bench_add_large_file reps={args.reps} dvc_median={dvc_med:.2f}s"
        f" modelcycle_median={mc_med:.2f}s speedup={ratio(dvc_med, mc_med)}"
        f" target>={DVC_TARGET:g}x | cp_median={cp_med:.2f}s cp_sync_median={cps_med:.2f}s"
        f" modelcycle/cp={mc_med / cp_med:.2f}x target<={CP_TARGET:g}x"
    )


if __name__ == "__main__":
    main()
