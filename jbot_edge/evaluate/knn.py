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
* ``device="faiss"``: FAISS's exact flat index (``IndexFlatL2`` / ``IndexFlatIP``, float32, BLAS GEMM plus a heap
  top-k) over query blocks; the optional ``faiss-cpu`` package (extra ``scale``). Not approximate: the same
  neighbours as the other paths up to float32 rounding. On CPU it replaces numpy's full-row ``np.partition``,
  which dominates the reference path (benchmarks/knn_scale.py).
* ``device="faiss-hnsw"`` (options ``"faiss-hnsw:ef=256,exact_tail=0.01"``, the defaults): FAISS's HNSW graph
  index (M = 32, efSearch ``ef``), **approximate in the bulk, exact in the tail**. A graph search may miss true
  neighbours, and a missed neighbour can only make a query look farther from the bank (larger l2sq, smaller dot),
  i.e. more anomalous. So the ``exact_tail`` share of each call's queries that look most anomalous (largest sum of
  the k approximate distances) is searched again with the exact flat index. Every query whose *exact* sum lies
  above the smallest re-searched approximate sum is then exact, since its approximate sum was at least as large:
  a selection above a threshold passed by at most ``exact_tail`` of the queries is the exact search's selection;
  the bulk (which sets AUCs) is approximate. The graph is built once per bank array and reused while that array
  lives (a streamed evaluation passes the same bank for every query block). Meant for banks of 10^6 and 10^7+
  queries on CPU, where exact search costs O(bank) per query; benchmarks/knn_scale.py measures its speed, its
  accuracy against exact search, and evaluate's AUCs on real jets with each device.

The default device comes from ``JBOT_EDGE_KNN_DEVICE`` (``cpu`` if unset), so large evaluations can move to a GPU
without touching configs or the score-head format.
"""

from __future__ import annotations

import os
import weakref
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
    if device == "faiss":
        return _nearest_k_faiss(x, bank, k, metric, query_block)
    if device == "faiss-hnsw" or device.startswith("faiss-hnsw:"):
        return _nearest_k_hnsw(x, bank, k, metric, query_block, **_hnsw_options(device))
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


HNSW_M = 32
HNSW_EF_CONSTRUCTION = 64
HNSW_DEFAULTS = {"ef": 256, "exact_tail": 1e-2}
_index_cache: dict[tuple, tuple[weakref.ref, object]] = {}


def _hnsw_options(device: str) -> dict:
    """``faiss-hnsw[:ef=N,exact_tail=F]`` → {"ef": N ≥ 1, "exact_tail": 0 ≤ F ≤ 1}, defaults for what is not given."""
    from jbot_edge.errors import JbotEdgeError

    options = dict(HNSW_DEFAULTS)
    _, _, spec = device.partition(":")
    for item in filter(None, spec.split(",")):
        key, _, value = item.partition("=")
        try:
            if key not in options:
                raise ValueError(f"unknown option {key!r}")
            options[key] = int(value) if key == "ef" else float(value)
            if (key == "ef" and options[key] < 1) or (key == "exact_tail" and not 0 <= options[key] <= 1):
                raise ValueError(f"{key}={value} out of range")
        except ValueError as exc:
            raise JbotEdgeError(f"kNN device {device!r}: {exc}; expected faiss-hnsw:ef=N,exact_tail=F with N ≥ 1 "
                                "and 0 ≤ F ≤ 1") from None
    return options


def _import_faiss():
    try:
        import faiss
    except ImportError as exc:
        from jbot_edge.errors import JbotEdgeError

        raise JbotEdgeError("kNN devices 'faiss' and 'faiss-hnsw' need the faiss-cpu package: "
                            "pip install 'jbot-edge[scale]'") from exc
    return faiss


def _faiss_index(bank: np.ndarray, metric: Metric, hnsw: bool):
    """A flat (exact) or HNSW (approximate) index of ``bank``; HNSW graphs are cached while the bank array lives."""
    faiss = _import_faiss()
    key = (id(bank), bank.shape, metric)
    cached = _index_cache.get(key) if hnsw else None
    if cached is not None and cached[0]() is bank:
        return cached[1]
    bank32 = np.ascontiguousarray(bank, dtype=np.float32)
    faiss_metric = faiss.METRIC_L2 if metric == "l2sq" else faiss.METRIC_INNER_PRODUCT
    if not hnsw:
        index = faiss.IndexFlat(bank32.shape[1], faiss_metric)
        index.add(bank32)
        return index
    index = faiss.IndexHNSWFlat(bank32.shape[1], HNSW_M, faiss_metric)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    index.add(bank32)
    _index_cache.clear()  # one graph at a time: a bank of 10^6 × 64 holds ~0.5 GB with its graph
    _index_cache[key] = (weakref.ref(bank), index)
    return index


def _search(index, x: np.ndarray, k: int, query_block: int) -> np.ndarray:
    out = np.empty((len(x), k))
    for lo in range(0, len(x), query_block):
        values, _ = index.search(np.ascontiguousarray(x[lo:lo + query_block], dtype=np.float32), k)
        out[lo:lo + len(values)] = values
    return out


def _nearest_k_faiss(x: np.ndarray, bank: np.ndarray, k: int, metric: Metric, query_block: int) -> np.ndarray:
    return _search(_faiss_index(bank, metric, hnsw=False), x, k, query_block)


def _nearest_k_hnsw(x: np.ndarray, bank: np.ndarray, k: int, metric: Metric, query_block: int, ef: int,
                    exact_tail: float) -> np.ndarray:
    index = _faiss_index(bank, metric, hnsw=True)
    index.hnsw.efSearch = max(ef, k)
    out = _search(index, x, k, query_block)
    n_tail = int(np.ceil(exact_tail * len(x)))
    if n_tail:
        # the most anomalous-looking queries: a missed neighbour only ever pushes a query up this ordering
        apparent = out.sum(axis=1) if metric == "l2sq" else -out.sum(axis=1)
        tail = np.argpartition(-apparent, n_tail - 1)[:n_tail]
        out[tail] = _nearest_k_faiss(x[tail], bank, k, metric, query_block)
    return out
