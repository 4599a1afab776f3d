"""Bank scorers at scale: the k-NN search behind the ``knn`` / ``knn_oe`` scores on a large bank and many queries.

Prints one JSON object. For each device asked for (``cpu``: the numpy reference path; ``cuda``: the chunked torch
path; ``faiss``: FAISS's exact flat index; ``faiss-hnsw[:ef=N,exact_tail=F]``: FAISS's HNSW graph, approximate in
the bulk and exact in the tail — see jbot_edge/evaluate/knn.py):

* speed: queries/s, wall time (the HNSW graph's build time separately), fed in --query-batch pieces as a streamed
  evaluation would, on synthetic embeddings of dimension --dim;
* accuracy against exact search on --recall-queries further queries (one call, so ``faiss-hnsw`` re-searches
  its exact_tail share of them): the fraction of queries whose k-th neighbour distance is exact, and the relative
  error of the mean k-NN distance (what the ``knn`` score is): mean, max, share above 1 % and 10 %.

Synthetic embeddings (``--data``): ``gaussian`` (isotropic, full-dimensional: the worst case for a graph index) or
``mixture`` (queries and bank from one 64-component Gaussian mixture: clustered, as jet embeddings are, and hard for
a graph search when the clusters are far apart). With ``--evaluate RUN,BANK_FILE,TEST_FILE`` it also runs
``jbot-edge evaluate`` once per device (through ``JBOT_EDGE_KNN_DEVICE``) on real jets and reports the ``knn`` and
``knn_oe`` AUCs of each, next to exact search.

    python benchmarks/knn_scale.py --bank 1000000 --queries 10000000 --devices cuda        # the issue's scale
    python benchmarks/knn_scale.py --bank 1000000 --queries 1000000 --devices faiss-hnsw   # on 2 CPU cores
    python benchmarks/knn_scale.py --bank 200000 --queries 20000 --devices cpu,faiss       # exact paths, scaled down
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import git_commit, jbot_edge_cli


def embeddings(kind: str, n: int, dim: int, seed: int, centres: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "gaussian":
        return rng.normal(size=(n, dim))
    return centres[rng.integers(0, len(centres), n)] + rng.normal(size=(n, dim)) * 0.5


def accuracy(device: str, queries: np.ndarray, bank: np.ndarray, k: int) -> dict:
    """k-th-neighbour exactness and the relative error of the mean k-NN distance, against the numpy path."""
    from jbot_edge.evaluate.knn import nearest_k

    exact = np.sort(nearest_k(queries, bank, k, "l2sq", device="cpu"), axis=1)
    got = np.sort(nearest_k(queries, bank, k, "l2sq", device=device), axis=1)
    mean_exact = np.sqrt(np.maximum(exact, 0)).mean(1)
    mean_got = np.sqrt(np.maximum(got, 0)).mean(1)
    rel = (mean_got - mean_exact) / np.maximum(mean_exact, 1e-12)
    return {"queries": len(queries),
            "kth_exact_fraction": float(np.isclose(got[:, -1], exact[:, -1], rtol=1e-4, atol=1e-6).mean()),
            "mean_distance_rel_error_mean": float(rel.mean()), "mean_distance_rel_error_max": float(rel.max()),
            "fraction_rel_error_above_1pc": float((rel > 0.01).mean()),
            "fraction_rel_error_above_10pc": float((rel > 0.1).mean())}


def time_device(device: str, bank: np.ndarray, args: argparse.Namespace, centres: np.ndarray) -> dict:
    from jbot_edge.evaluate import knn

    build_s = 0.0
    if device.startswith("faiss-hnsw"):
        t0 = time.perf_counter()
        knn._faiss_index(bank, "l2sq", hnsw=True)
        build_s = time.perf_counter() - t0
    start, checksum = time.perf_counter(), 0.0
    for lo in range(0, args.queries, args.query_batch):
        q = embeddings(args.data, min(args.query_batch, args.queries - lo), args.dim, lo + 1, centres)
        checksum += float(np.sqrt(np.maximum(knn.nearest_k(q, bank, args.k, "l2sq", device=device), 0)).sum())
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
        name = torch.cuda.get_device_name()
    else:
        name = "cpu"
    wall = time.perf_counter() - start
    row = {"device": device, "device_name": name, "index_build_s": round(build_s, 2), "wall_s": round(wall, 2),
           "queries_per_s": round(args.queries / wall), "pairs_per_s": args.queries * args.bank / wall,
           "mean_knn_distance": checksum / (args.queries * args.k)}
    if args.recall_queries and device != "cpu":
        row["accuracy_vs_exact"] = accuracy(device, embeddings(args.data, args.recall_queries, args.dim, 1, centres),
                                            bank, args.k)
    return row


def evaluate_on_jets(spec: str, devices: list[str], threads: int, log_dir: Path) -> dict:
    """``jbot-edge evaluate`` per device on real jets: AUC of the knn and knn_oe scores per signal (logs kept in
    ``log_dir``, the evaluation outputs discarded)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    run, bank_file, test_file = spec.split(",")
    out = {}
    with tempfile.TemporaryDirectory(prefix="knn_scale-") as tmp:
        for device in ["cpu", *[d for d in devices if d != "cpu"]]:
            eval_dir = Path(tmp) / device.replace(":", "_").replace(",", "_").replace("=", "")
            wall = jbot_edge_cli("evaluate", "--run", run, "--data", test_file, "--bank-data", bank_file,
                                 "--background", "q,g", "--signals", "w,z,t", "--out", str(eval_dir),
                                 "compare=[knn_oe,knn]", "scorer=knn_oe", "finetune.enabled=false",
                                 "probes.enabled=false", "clustering.enabled=false", "reference.untrained=false",
                                 f"threads={threads}", log=log_dir / f"evaluate-{eval_dir.name}.log",
                                 env={"JBOT_EDGE_KNN_DEVICE": device})
            report = json.loads((eval_dir / "evaluate.json").read_text())
            out[device] = {"evaluate_s": wall, "split": report.get("split", {}).get("eval_counts"),
                           "auc": {scorer: {s: round(m["auc"], 4) for s, m in r["signals"].items()}
                                   for scorer, r in report["scorers"].items()}}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bank", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=35, help="35 = the small teacher's [CLS] (32) + 3 observables")
    parser.add_argument("--k", type=int, default=30)
    parser.add_argument("--devices", default="cpu")
    parser.add_argument("--data", choices=["gaussian", "mixture"], default="mixture")
    parser.add_argument("--query-batch", type=int, default=1_000_000)
    parser.add_argument("--recall-queries", type=int, default=2000, help="0: skip the accuracy check")
    parser.add_argument("--evaluate", default=None, metavar="RUN,BANK_FILE,TEST_FILE")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--logs", type=Path, default=Path(__file__).resolve().parent.parent / ".cache" / "knn_scale",
                        help="where --evaluate keeps the evaluate logs")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(64, args.dim)) * 2.0
    bank = embeddings(args.data, args.bank, args.dim, 0, centres)
    devices = args.devices.split(",")
    report = {"benchmark": "knn_scale", "bank": args.bank, "queries": args.queries, "dim": args.dim, "k": args.k,
              "data": args.data, "results": [time_device(device, bank, args, centres) for device in devices]}
    if args.evaluate:
        report["evaluate_on_jets"] = evaluate_on_jets(args.evaluate, devices, args.threads, args.logs)
    report["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report["load_average"] = os.getloadavg()
    report["commit"] = git_commit()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
