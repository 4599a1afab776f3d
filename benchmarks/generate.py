"""Generator throughput: jets/s per worker per process, 1→2 worker scaling, and our overhead around Pythia.

Prints one JSON object:

* ``per_process[p]``: one shard of process ``p`` run in this process (one core): ``jets_per_s`` (event loop only:
  Pythia + FastJet + labelling + writing; no imports, no ``init``), ``raw_pythia_jets_per_s`` (jets per second spent
  inside ``pythia.nextBatch``), ``share_of_raw_pythia`` (their ratio = time in Pythia / loop time; goal ≥ 0.8),
  ``events_per_s`` and the selection efficiency.
* ``scaling``: the full ``generate`` (spawned workers, shard files, merge) with ``workers`` 1 and 2 at a fixed
  ``shards = 2``, so both runs make the same jets; ``speedup`` = wall(1) / wall(2) (≤ 2 on two free cores).

Usage: ``python benchmarks/generate.py --n-jets 200 --processes q,t [--no-mpi] [--preset l1]``.
Keep N small on shared machines; the numbers are per core and scale with free cores.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from jbot_edge.config import resolve_config
from jbot_edge.data.generator import GeneratorConfig, ShardTask, generate, parse_processes, preset_file, run_shard
from jbot_edge.data.processes import stream_of


def _config(args: argparse.Namespace, **values) -> GeneratorConfig:
    return resolve_config(GeneratorConfig, cli_values={"mpi": args.mpi, "seed": args.seed, **values},
                          default_file=preset_file(args.preset))


def per_process(args: argparse.Namespace, processes: list[str], workdir: Path) -> dict[str, dict[str, float]]:
    out = {}
    for process in processes:
        config = _config(args, processes=[process], n_jets=args.n_jets)
        stream = stream_of(process)
        task = ShardTask(config.model_dump(mode="json"), stream.name, 0, args.seed + 1, {process: args.n_jets},
                         [process], str(workdir / process))
        Path(task.directory).mkdir()
        result = run_shard(task)
        jets = result.kept[process]
        out[process] = {
            "jets": jets,
            "events": result.events,
            "efficiency": result.accepted[process] / result.events,
            "jets_per_s": jets / result.loop_time_s,
            "events_per_s": result.events / result.loop_time_s,
            "raw_pythia_jets_per_s": jets / result.pythia_time_s,
            "share_of_raw_pythia": result.pythia_time_s / result.loop_time_s,
            "init_s": result.init_time_s,
        }
    return out


def scaling(args: argparse.Namespace, processes: list[str], workdir: Path) -> dict[str, float]:
    wall = {}
    for workers in (1, 2):
        config = _config(args, processes=processes, n_jets=args.n_jets, workers=workers, shards=2)
        start = time.perf_counter()
        generate(config, workdir / f"scaling-{workers}.h5", show_progress=False)
        wall[workers] = time.perf_counter() - start
        wall[f"load_{workers}"] = os.getloadavg()[0]
    n = args.n_jets * len(processes)
    identical = (workdir / "scaling-1.h5").read_bytes() == (workdir / "scaling-2.h5").read_bytes()
    return {"jets": n, "wall_s_1_worker": wall[1], "wall_s_2_workers": wall[2],
            "jets_per_s_1_worker": n / wall[1], "jets_per_s_2_workers": n / wall[2],
            "speedup": wall[1] / wall[2], "identical_output": identical,
            "load_average_1min_after": {"1_worker": wall["load_1"], "2_workers": wall["load_2"]}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-jets", type=int, default=200, help="jets per process")
    parser.add_argument("--processes", default="q,g,w,z,t,h")
    parser.add_argument("--preset", default="jetnet")
    parser.add_argument("--mpi", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument("--skip-per-process", action="store_true", help="only the 1→2 worker scaling")
    args = parser.parse_args()
    processes = parse_processes(args.processes)
    with tempfile.TemporaryDirectory(prefix="jbot-edge-bench-") as tmp:
        report = {"preset": args.preset, "mpi": args.mpi, "n_jets_per_process": args.n_jets}
        if not args.skip_per_process:
            report["per_process"] = per_process(args, processes, Path(tmp))
            shares = [v["share_of_raw_pythia"] for v in report["per_process"].values()]
            report["min_share_of_raw_pythia"] = min(shares)
            report["goal_share_of_raw_pythia"] = 0.8
        if not args.skip_scaling:
            report["scaling"] = scaling(args, processes, Path(tmp))
    # The machine may be shared: the load next to the timings says how much of it the runs had.
    report["load_average_after"] = os.getloadavg()
    report["cpu_count"] = os.cpu_count()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
