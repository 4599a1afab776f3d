"""Chunked k-nearest-neighbour search shared by the bank scorers (``knn``, ``cosine``), in bounded memory.

``nearest_k(x, bank, k, metric)`` returns, for every query row, the k smallest squared L2 distances
(``metric="l2sq"``) or the k largest dot products (``metric="dot"``) against the bank, never materialising more
than one ``[query block, bank chunk]`` tile:

* ``device="cpu"`` (default): numpy float64, query blocks against the whole bank (tile ≤ ``BLOCK_ELEMENTS``
  values; one query row at a time once the bank itself exceeds it). This is the reference path: score heads are
  recomputed bit-identically with it.
* ``device="cuda"`` (or any torch device): query blocks × bank chunks on the device in float32 with a running
  top-k merged chunk by chunk (tile = ``query_block × bank_chunk``), so a bank of 10^6–10^7 embeddings and 10^7
  queries fit in a few GiB; results agree with the CPU path to float32 rounding, not bit for bit.

The default device comes from ``JBOT_EDGE_KNN_DEVICE`` (``cpu`` if unset), so large evaluations can move to a GPU
without touching configs or the score-head format.
"""

from __future__ import annotations

import os
from typing import Literal

import numpy as np

#: Work on at most this many query×bank similarities at once on CPU (float64: 64 MB).
BLOCK_ELEMENTS = 8_000_000
Metric = Literal["l2sq", "dot"]


def default_device() -> str:
    return os.environ.get("JBOT_EDGE_KNN_DEVICE", "cpu")


def nearest_k(x: np.ndarray, bank: np.ndarray, k: int, metric: Metric, device: str | None = None,
              query_block: int = 8192, bank_chunk: int = 262_144) -> np.ndarray:
    """float64 [N, k]: per query, the k best values (unsorted on CPU, sorted on other devices)."""
    device = device or default_device()
    if device == "cpu":
        return _nearest_k_numpy(x, bank, k, metric)
    return _nearest_k_torch(x, bank, k, metric, device, query_block, bank_chunk)


def _blocks(n_queries: int, n_bank: int):
    step = max(1, BLOCK_ELEMENTS // max(n_bank, 1))
    for lo in range(0, n_queries, step):
        yield slice(lo, min(lo + step, n_queries))


def _nearest_k_numpy(x: np.ndarray, bank: np.ndarray, k: int, metric: Metric) -> np.ndarray:
    out = np.empty((len(x), k))
    bank_sq = np.einsum("ij,ij->i", bank, bank) if metric == "l2sq" else None
    for rows in _blocks(len(x), len(bank)):
        q = x[rows]
        if metric == "l2sq":
            d2 = np.einsum("ij,ij->i", q, q)[:, None] + bank_sq[None, :] - 2.0 * (q @ bank.T)
            out[rows] = np.partition(d2, k - 1, axis=1)[:, :k]
        else:
            out[rows] = -np.partition(-(q @ bank.T), k - 1, axis=1)[:, :k]
    return out


def _nearest_k_torch(x: np.ndarray, bank: np.ndarray, k: int, metric: Metric, device: str, query_block: int,
                     bank_chunk: int) -> np.ndarray:
    import torch

    largest = metric == "dot"
    out = np.empty((len(x), k))
    with torch.no_grad():
        chunks = []
        for lo in range(0, len(bank), bank_chunk):
            b = torch.as_tensor(bank[lo:lo + bank_chunk], dtype=torch.float32, device=device)
            chunks.append((b, (b * b).sum(1) if metric == "l2sq" else None))
        for qlo in range(0, len(x), query_block):
            q = torch.as_tensor(x[qlo:qlo + query_block], dtype=torch.float32, device=device)
            q_sq = (q * q).sum(1, keepdim=True) if metric == "l2sq" else None
            best = None
            for b, b_sq in chunks:
                values = q @ b.T
                if metric == "l2sq":
                    values = q_sq + b_sq[None, :] - 2.0 * values
                top = values.topk(min(k, values.shape[1]), dim=1, largest=largest).values
                best = top if best is None else torch.cat([best, top], 1).topk(k, dim=1, largest=largest).values
            out[qlo:qlo + len(q)] = best.double().cpu().numpy()
    return out
