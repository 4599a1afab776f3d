"""The shared chunked k-NN search: CPU blocks and the chunked torch path (run on CPU here, CUDA in test_gpu's
machine) find the same neighbours, including when the bank is split into many chunks."""

from __future__ import annotations

import numpy as np
import pytest

from jbot_edge.evaluate.knn import _nearest_k_torch, nearest_k


@pytest.mark.parametrize("metric", ["l2sq", "dot"])
def test_chunked_torch_path_matches_numpy(metric):
    rng = np.random.default_rng(0)
    bank, x = rng.normal(size=(5000, 16)), rng.normal(size=(700, 16))
    ref = np.sort(nearest_k(x, bank, 7, metric, device="cpu"), axis=1)
    brute = (((x[:, None] - bank[None]) ** 2).sum(-1) if metric == "l2sq" else -(x @ bank.T))
    want = np.sort(brute, axis=1)[:, :7] * (1 if metric == "l2sq" else -1)
    np.testing.assert_allclose(np.sort(ref, axis=1), np.sort(want, axis=1), rtol=1e-9, atol=1e-9)
    # the torch path, on CPU, with tiny tiles so that the running top-k merges across many chunks
    chunked = _nearest_k_torch(x, bank, 7, metric, "cpu", query_block=128, bank_chunk=333)
    np.testing.assert_allclose(np.sort(chunked, axis=1), np.sort(ref, axis=1), rtol=1e-4, atol=1e-4)
