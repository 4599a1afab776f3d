"""Bank scorers at scale: the chunked k-NN search (jbot_edge.evaluate.knn) on a large bank and many queries.

Prints one JSON object: queries/s, wall time and peak RSS for each device asked for (cpu: the numpy reference
path; cuda: the chunked torch path), on random embeddings of dimension --dim (the search cost does not depend on
where the embeddings came from). Queries are fed in --query-batch pieces, as a streaming evaluation would.

    python benchmarks/knn_scale.py --bank 1000000 --queries 10000000 --devices cuda     # the issue's scale
    python benchmarks/knn_scale.py --bank 200000 --queries 20000 --devices cpu          # scaled down (2 cores)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bank", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--devices", default="cpu")
    parser.add_argument("--query-batch", type=int, default=1_000_000)
    args = parser.parse_args()

    from jbot_edge.evaluate.knn import nearest_k

    rng = np.random.default_rng(0)
    bank = rng.normal(size=(args.bank, args.dim))
    report = {"benchmark": "knn_scale", "bank": args.bank, "queries": args.queries, "dim": args.dim, "k": args.k,
              "results": []}
    for device in args.devices.split(","):
        start, checksum = time.perf_counter(), 0.0
        for lo in range(0, args.queries, args.query_batch):
            q = np.random.default_rng(lo + 1).normal(size=(min(args.query_batch, args.queries - lo), args.dim))
            checksum += float(np.sqrt(np.maximum(nearest_k(q, bank, args.k, "l2sq", device=device), 0)).sum())
        if device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
            name = torch.cuda.get_device_name()
        else:
            name = "cpu"
        wall = time.perf_counter() - start
        report["results"].append({"device": device, "device_name": name, "wall_s": round(wall, 2),
                                  "queries_per_s": round(args.queries / wall),
                                  "pairs_per_s": args.queries * args.bank / wall,
                                  "mean_knn_distance": checksum / (args.queries * args.k)})
    report["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report["load_average"] = os.getloadavg()
    from _common import git_commit

    report["commit"] = git_commit()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
