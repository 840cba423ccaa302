"""W2: version 20,000 small files from cold -- `dvc add dirA` vs `modelcycle dataset add`.

Data: $BENCH_HOME/data/dirA (20,000 files of 1-20 KiB, ~214 MB), made by
../shared/bench/peers/w2_gen_data.py. Per repetition, each tool gets a fresh repository
with the data copied in untimed (so the page cache is warm), then one timed process:

  dvc         git init + dvc init (state/index DB pointed into the repo: cold), then
              `dvc add dirA`, as ../shared/bench/peers/w2_dvc.sh does (add_cold)
  modelcycle  `modelcycle init .` (untimed), then `modelcycle dataset add files ./dirA`

The tool that goes first alternates between repetitions. Target: modelcycle >= 5x
faster than DVC (median wall time). The last line is `SUMMARY bench_add_files ...`.

    python bench/add_files.py [--reps 5] [--data DIR] [--dvc PATH] [--modelcycle PATH]
"""

from __future__ import annotations

import os

from _common import (
    Sample,
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
    save_results,
    scratch,
    timed,
    tool_order,
    tool_version,
)

TARGET = 5.0


def main() -> None:
    args = parse_args(__doc__ or "")
    dvc, mc = find_dvc(args.dvc), find_modelcycle(args.modelcycle)
    require_w2_data(args.data)
    dir_a = args.data / "dirA"
    a_bytes = sum(e.stat().st_size for e in os.scandir(dir_a))
    meta = {
        "dvc": tool_version([dvc, "--version"]),
        "modelcycle": tool_version([mc, "--version"]),
        "reps": args.reps,
        "bytes": a_bytes,
    }
    print(f"bench_add_files  {meta}  cores={os.cpu_count()}  load1={os.getloadavg()[0]:.2f}")

    samples: list[Sample] = []
    outputs: dict[str, str] = {}
    for rep in range(1, args.reps + 1):
        for tool in tool_order(rep, ["dvc", "modelcycle"]):
            with scratch(args.data, f"add_files-{tool}", args.keep, args.settle) as work:
                repo = work / "repo"
                if tool == "dvc":
                    new_dvc_repo(repo, dvc)
                    cmd = [dvc, "add", "dirA"]
                else:
                    new_mc_workspace(repo, mc)
                    cmd = [mc, "dataset", "add", "files", "./dirA"]
                copy_in(dir_a, repo / "dirA")
                log = work / "add.log"
                samples.append(timed(cmd, repo, log, tool=tool, step="add_cold", rep=rep))
                outputs.setdefault(tool, last_line(log))

    print_table(samples, {"add_cold": a_bytes})
    for tool, line in outputs.items():
        print(f"{tool} said (rep 1): {line}")
    print(f"results: {save_results(args.data, 'add_files', meta, samples)}")
    dvc_med = median(samples, "dvc", "add_cold")
    mc_med = median(samples, "modelcycle", "add_cold")
    print(
        f"SUMMARY bench_add_files reps={args.reps} dvc_median={dvc_med:.2f}s"
        f" modelcycle_median={mc_med:.2f}s speedup={ratio(dvc_med, mc_med)} target>={TARGET:g}x"
    )


if __name__ == "__main__":
    main()
