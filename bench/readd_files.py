"""W2: re-add 20,000 files after 100 changed, and status with nothing changed.

Data: $BENCH_HOME/data/dirA (20,000 files of 1-20 KiB), made by
../shared/bench/peers/w2_gen_data.py. Per repetition, each tool gets a fresh repository
with the data copied in untimed and added once (untimed, recorded as add_cold), then:

  (rewrite 100 files, f00000, f00200, ..., with new random bytes of the same size, as
   ../shared/bench/peers/w2_dvc.sh does; sync)
  readd         dvc add dirA              modelcycle dataset add files ./dirA
  status_clean  dvc status                modelcycle dataset status files ./dirA

The tool that goes first alternates between repetitions. Targets: re-add >= 10x faster
than DVC; status with nothing changed < 0.2 s. The last line is
`SUMMARY bench_readd_files ...`.

    python bench/readd_files.py [--reps 5] [--data DIR] [--dvc PATH] [--modelcycle PATH]
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
    modify100,
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

READD_TARGET = 10.0
STATUS_TARGET_S = 0.2


def main() -> None:
    args = parse_args(__doc__ or "")
    dvc, mc = find_dvc(args.dvc), find_modelcycle(args.modelcycle)
    require_w2_data(args.data)
    dir_a = args.data / "dirA"
    meta = {
        "dvc": tool_version([dvc, "--version"]),
        "modelcycle": tool_version([mc, "--version"]),
        "reps": args.reps,
    }
    print(f"bench_readd_files  {meta}  cores={os.cpu_count()}  load1={os.getloadavg()[0]:.2f}")

    commands = {
        "dvc": {"add": [dvc, "add", "dirA"], "status": [dvc, "status"]},
        "modelcycle": {
            "add": [mc, "dataset", "add", "files", "./dirA"],
            "status": [mc, "dataset", "status", "files", "./dirA"],
        },
    }
    samples: list[Sample] = []
    outputs: dict[tuple[str, str], str] = {}
    for rep in range(1, args.reps + 1):
        for tool in tool_order(rep, ["dvc", "modelcycle"]):
            cmds = commands[tool]
            with scratch(args.data, f"readd_files-{tool}", args.keep, args.settle) as work:
                repo = work / "repo"
                if tool == "dvc":
                    new_dvc_repo(repo, dvc)
                else:
                    new_mc_workspace(repo, mc)
                copy_in(dir_a, repo / "dirA")
                steps = [("add_cold", cmds["add"]), ("readd", cmds["add"])]
                steps.append(("status_clean", cmds["status"]))
                for step, cmd in steps:
                    if step == "readd":
                        modify100(repo / "dirA", 0, rep)
                    log = work / f"{step}.log"
                    samples.append(timed(cmd, repo, log, tool=tool, step=step, rep=rep))
                    outputs.setdefault((tool, step), last_line(log))

    print_table(samples)
    for (tool, step), line in outputs.items():
        print(f"{tool} {step} said (rep 1): {line}")
    print(f"results: {save_results(args.data, 'readd_files', meta, samples)}")
    dvc_add, mc_add = median(samples, "dvc", "readd"), median(samples, "modelcycle", "readd")
    dvc_st = median(samples, "dvc", "status_clean")
    mc_st = median(samples, "modelcycle", "status_clean")
    print(
        f"SUMMARY bench_readd_files reps={args.reps} dvc_median={dvc_add:.2f}s"
        f" modelcycle_median={mc_add:.2f}s speedup={ratio(dvc_add, mc_add)}"
        f" target>={READD_TARGET:g}x | status_clean dvc_median={dvc_st:.2f}s"
        f" modelcycle_median={mc_st:.3f}s speedup={ratio(dvc_st, mc_st)}"
        f" target<{STATUS_TARGET_S:g}s"
    )


if __name__ == "__main__":
    main()
