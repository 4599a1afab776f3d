"""The fast emulator on a rate-study-sized file: 10^8 jets streamed from HDF5 in bounded memory (issue 18, item 5).

Pythia cannot make 10^8 jets here (≈ 100 jets/s/core), so the file is a **tiling** of a real one: ``--data``
(a canonical jet file, e.g. the demo's) is copied ``--base-copies`` times into a real gzip-compressed base file,
and an HDF5 *virtual* file maps that base ``--tiles`` times along the jet axis (every dataset, the same attributes,
``n_jets`` updated). Every one of the N jets is read through the normal reader, L1-quantised, scored by the fast
emulator and written to the scores file — the whole ``emulate --score-all`` path (``score_file``). Repeated jets
cost what new ones would: nothing is cached between batches except by the OS page cache (the base file is read
N / len(base) times, so disk speed is *not* measured; a real 10^8-jet file of this layout would be ≈ 30 GB).

Checks: the scores of every tile equal the first tile's, and the first tile's equal ``score_codes`` of the base jets
read directly; peak resident memory (bounded by the batch, not N).

    python benchmarks/emulate_stream.py --firmware runs/demo/firmware --data runs/demo/jets.h5 --jets 100000000

Prints one JSON object (also written to ``--json``).
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
from _common import git_commit, write_result


def _dataset_names(f: h5py.File) -> list[str]:
    names: list[str] = []
    f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return names


def write_base(source: Path, out: Path, copies: int) -> int:
    """``copies`` back-to-back copies of every jet of ``source`` in a real file (same layout); its jet count."""
    with h5py.File(source, "r") as src, h5py.File(out, "w") as dst:
        n = int(src["labels"].shape[0])
        for name in _dataset_names(src):
            ds = src[name]
            data = ds[...]
            dst.create_dataset(name, data=np.concatenate([data] * copies), chunks=ds.chunks,
                               compression=ds.compression)
        for key, value in src.attrs.items():
            dst.attrs[key] = value
        dst.attrs["n_jets"] = n * copies
    return n * copies


def write_tiled(base: Path, out: Path, tiles: int) -> int:
    """A virtual file mapping ``base`` ``tiles`` times along the jet axis; its jet count."""
    with h5py.File(base, "r") as src, h5py.File(out, "w", libver="latest") as dst:
        n = int(src["labels"].shape[0])
        for name in _dataset_names(src):
            ds = src[name]
            layout = h5py.VirtualLayout(shape=(n * tiles, *ds.shape[1:]), dtype=ds.dtype)
            vsource = h5py.VirtualSource(str(base.resolve()), name, shape=ds.shape)
            for t in range(tiles):
                layout[t * n:(t + 1) * n] = vsource
            dst.create_virtual_dataset(name, layout)
        for key, value in src.attrs.items():
            dst.attrs[key] = value
        dst.attrs["n_jets"] = n * tiles
    return n * tiles


def check_tiles(scores_path: Path, reference: np.ndarray, block: int) -> dict:
    """Every tile of the streamed scores equals ``reference`` (read one block at a time)."""
    n_ref, mismatched, n = len(reference), 0, 0
    with h5py.File(scores_path, "r") as f:
        ds = f["scores_lsb"]
        n = int(ds.shape[0])
        for lo in range(0, n, block):
            got = ds[lo:lo + block]
            want = reference[np.arange(lo, lo + len(got)) % n_ref]
            mismatched += int((got != want).sum())
    return {"n": n, "mismatched": mismatched}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--firmware", type=Path, required=True, help="FW_DIR from `jbot-edge synth`")
    parser.add_argument("--data", type=Path, required=True, help="canonical jet file to tile")
    parser.add_argument("--jets", type=int, default=100_000_000, help="jets to stream (a multiple of the base)")
    parser.add_argument("--base-copies", type=int, default=100, help="copies of --data in the real base file")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=None, help="where the base, virtual and scores files go "
                        "(default: a temporary directory, removed afterwards)")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/emulate_stream.json"))
    args = parser.parse_args()

    import torch

    from jbot_edge.firmware.emulate import load_firmware
    from jbot_edge.firmware.fast_emulate import iter_file_codes, score_file
    from jbot_edge.logs import setup_logging

    setup_logging()
    torch.set_num_threads(args.threads)
    fast = load_firmware(args.firmware, fast=True).scorers["fast"].emulator
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        n_base = write_base(args.data, work / "base.h5", args.base_copies)
        if args.jets % n_base:
            raise SystemExit(f"error: --jets {args.jets} is not a multiple of the base file's {n_base} jets")
        n = write_tiled(work / "base.h5", work / "tiled.h5", args.jets // n_base)
        build_s = time.perf_counter() - start
        reference = np.concatenate([fast.score_codes(c) for c in iter_file_codes(work / "base.h5", fast.spec)])
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        stream = score_file(fast, work / "tiled.h5", work / "scores.h5")
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        tiles = check_tiles(work / "scores.h5", reference, block=1 << 22)
        scores_mb = (work / "scores.h5").stat().st_size / 2**20
    write_result({
        "benchmark": "emulate_stream",
        "commit": git_commit(),
        "firmware": str(args.firmware),
        "data": str(args.data),
        "n_jets": n,
        "base_jets": n_base,
        "tiles": n // n_base,
        "build_s": round(build_s, 1),
        "stream": {k: (round(v, 3) if isinstance(v, float) else v) for k, v in stream.items()},
        "scores_file_mb": round(scores_mb, 1),
        "tiles_equal_direct_scores": tiles,
        "exact": tiles["n"] == n and tiles["mismatched"] == 0,
        "peak_rss_mb": {"before_stream": round(rss_before, 1), "after_stream": round(rss_after, 1)},
        "threads": args.threads,
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "note": "jets tiled from --data (see the module docstring): the read → L1 quantisation → fast emulator → "
                "HDF5 path runs on every jet; the base file is served from the page cache, so disk speed is not "
                "part of the rate",
    }, args.json)


if __name__ == "__main__":
    main()
