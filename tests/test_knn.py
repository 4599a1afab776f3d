"""The shared chunked k-NN search: CPU blocks, the chunked torch path (run on CPU here, CUDA in test_gpu's
machine) and FAISS's exact flat index find the same neighbours, including when the bank is split into many
chunks; FAISS's approximate HNSW index finds nearly all of them and is never better than exact."""

from __future__ import annotations

import numpy as np
import pytest

from jbot_edge.errors import JbotEdgeError
from jbot_edge.evaluate import knn
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


@pytest.mark.parametrize("metric", ["l2sq", "dot"])
def test_faiss_path_matches_numpy(metric):
    rng = np.random.default_rng(1)
    bank, x = rng.normal(size=(4000, 24)), rng.normal(size=(900, 24))
    ref = np.sort(nearest_k(x, bank, 5, metric, device="cpu"), axis=1)
    # query blocks smaller than the query set, so the block loop is exercised
    got = np.sort(nearest_k(x, bank, 5, metric, device="faiss", query_block=256), axis=1)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_faiss_hnsw_is_close_in_the_bulk_exact_in_the_tail_and_cached():
    rng = np.random.default_rng(2)
    # well-separated clusters: the case where a graph search can get stuck in the wrong cluster
    centres = rng.normal(size=(64, 16)) * 3
    bank = centres[rng.integers(0, 64, 20000)] + rng.normal(size=(20000, 16)) * 0.5
    x = centres[rng.integers(0, 64, 2000)] + rng.normal(size=(2000, 16)) * 0.5
    exact = np.sort(nearest_k(x, bank, 10, "l2sq", device="cpu"), axis=1)
    loose = np.sort(nearest_k(x, bank, 10, "l2sq", device="faiss-hnsw:ef=10,exact_tail=0"), axis=1)
    # a missed neighbour can only make a distance larger, never smaller
    assert np.all(loose >= exact - 1e-3 * (1 + exact))
    missed = ~np.isclose(loose, exact, rtol=1e-4).all(axis=1)
    assert missed.any(), "ef=10 should miss some neighbours here (else this test checks nothing)"
    tail = 0.05
    got = np.sort(nearest_k(x, bank, 10, "l2sq", device=f"faiss-hnsw:ef=10,exact_tail={tail}"), axis=1)
    # the re-searched queries are exact, and so is every query whose exact sum lies above the smallest of them
    redone = np.isclose(got, exact, rtol=1e-4).all(axis=1) & missed
    assert redone.sum() >= 1
    threshold = loose.sum(1)[np.argsort(-loose.sum(1))[int(np.ceil(tail * len(x))) - 1]]
    above = exact.sum(1) > threshold
    assert above.sum() >= 50
    np.testing.assert_allclose(got[above], exact[above], rtol=1e-4, atol=1e-4)
    # the default setting finds (nearly) all neighbours of this set
    default = np.sort(nearest_k(x, bank, 10, "l2sq", device="faiss-hnsw"), axis=1)
    assert np.isclose(default[:, -1], exact[:, -1], rtol=1e-4).mean() > 0.95
    # the graph is built once per bank array: a second call with the same array reuses it
    index = knn._faiss_index(bank, "l2sq", hnsw=True)
    assert knn._faiss_index(bank, "l2sq", hnsw=True) is index
    assert knn._faiss_index(bank.copy(), "l2sq", hnsw=True) is not index


@pytest.mark.parametrize("device", ["faiss-hnsw:ef=0", "faiss-hnsw:ef=abc", "faiss-hnsw:exact_tail=2",
                                    "faiss-hnsw:nprobe=3"])
def test_faiss_hnsw_rejects_bad_options(device):
    with pytest.raises(JbotEdgeError, match="faiss-hnsw:ef=N,exact_tail=F"):
        nearest_k(np.zeros((2, 3)), np.zeros((5, 3)), 2, "l2sq", device=device)
