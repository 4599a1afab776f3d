"""Canonical jet format: writer/reader round trips, streaming, index reads and every way a file can be wrong."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from jbot_edge.data.format import CHUNK_JETS, SCHEMA_NAME, SCHEMA_VERSION, JetBatch, JetFileWriter
from jbot_edge.data.reader import JetFile
from jbot_edge.errors import JbotEdgeError

FEATURES = ["part_deta", "part_dphi", "part_pt_rel", "part_pt"]
JET_FEATURES = ["jet_pt", "jet_mass"]
LABELS = ["q", "g", "t"]


def make_batch(n: int, p: int = 6, seed: int = 0, first_id: int = 0) -> JetBatch:
    """Valid jets with 1..p particles; ``jet_pt`` holds a running id so order can be checked after reading."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, p + 1, n)
    mask = np.arange(p)[None, :] < counts[:, None]
    particles = {}
    for name in FEATURES:
        values = rng.normal(size=(n, p)).astype(np.float32)
        particles[name] = np.where(mask, values, 0).astype(np.float32)
    return JetBatch(particles=particles, mask=mask,
                    jets={"jet_pt": np.arange(first_id, first_id + n, dtype=np.float64),
                          "jet_mass": rng.uniform(0, 200, n)},
                    labels=rng.integers(0, len(LABELS), n))


def write(path, *batches: JetBatch, p: int = 6, **kwargs) -> None:
    with JetFileWriter(path, n_particles=p, particle_features=FEATURES, jet_features=JET_FEATURES,
                       label_names=LABELS, source="unit-test", provenance={"seed": 7, "note": "é"},
                       **kwargs) as writer:
        for batch in batches:
            writer.append(batch)


def test_round_trip_values_dtypes_and_attrs(tmp_path):
    a, b = make_batch(700, seed=1), make_batch(500, seed=2, first_id=700)
    path = tmp_path / "jets.h5"
    write(path, a, b)
    with JetFile(path) as f:
        assert len(f) == 1200 and f.n_particles == 6
        assert f.particle_features == sorted(FEATURES) and f.jet_features == sorted(JET_FEATURES)
        assert f.label_names == LABELS
        assert f.provenance == {"seed": 7, "note": "é"}
        attrs = f.attrs
        assert attrs["schema"] == SCHEMA_NAME and attrs["schema_version"] == SCHEMA_VERSION
        assert attrs["n_jets"] == 1200 and attrs["source"] == "unit-test" and attrs["label_names"] == LABELS
        both = JetBatch.concatenate([a, b])
        back = f.read(slice(0, None))
        for name in FEATURES:
            np.testing.assert_array_equal(back.particles[name], both.particles[name])
        np.testing.assert_array_equal(back.mask, both.mask)
        np.testing.assert_array_equal(back.jets["jet_mass"], both.jets["jet_mass"])
        np.testing.assert_array_equal(back.labels, both.labels)
        assert f.counts_per_label() == {n: int((both.labels == i).sum()) for i, n in enumerate(LABELS)}
    with h5py.File(path, "r") as h5:  # the on-disk layout documented in docs/jet_format.md
        assert h5["particles/part_deta"].dtype == np.float32 and h5["particles/mask"].dtype == np.bool_
        assert h5["jets/jet_pt"].dtype == np.float64 and h5["labels"].dtype == np.int32
        assert h5["particles/part_pt"].chunks == (CHUNK_JETS, 6) and h5["particles/part_pt"].compression == "gzip"
        assert json.loads(h5["labels"].attrs["label_names"]) == LABELS


@pytest.mark.parametrize("batch_size, expected", [(1000, [1000] * 10), (3000, [3000, 3000, 3000, 1000]),
                                                  (20000, [10000])])
def test_iter_batches_sizes_across_block_boundaries(tmp_path, batch_size, expected):
    path = tmp_path / "big.h5"
    write(path, make_batch(10000, p=3, seed=3), p=3)
    with JetFile(path) as f:
        batches = list(f.iter_batches(batch_size))
    assert [len(b) for b in batches] == expected
    ids = np.concatenate([b.jets["jet_pt"] for b in batches])
    np.testing.assert_array_equal(ids, np.arange(10000))  # every jet once, in file order


def test_iter_batches_label_filter_start_stop_and_feature_subset(tmp_path):
    path = tmp_path / "big.h5"
    full = make_batch(9000, p=3, seed=4)
    write(path, full, p=3)
    with JetFile(path) as f:
        batches = list(f.iter_batches(700, labels=["t", "q"], particle_features=["part_pt_rel"],
                                      jet_features=["jet_pt"], start=1000, stop=8500))
        with pytest.raises(JbotEdgeError, match=r"labels: label\(s\) \['w'\] not in"):
            next(f.iter_batches(10, labels=["w"]))
        with pytest.raises(JbotEdgeError, match="batch_size must be ≥ 1"):
            next(f.iter_batches(0))
        with pytest.raises(JbotEdgeError, match=r"particle feature\(s\) \['part_energy'\]"):
            next(f.iter_batches(10, particle_features=["part_energy"]))
    assert all(len(b) == 700 for b in batches[:-1]) and 0 < len(batches[-1]) <= 700
    assert set(batches[0].particles) == {"part_pt_rel"} and set(batches[0].jets) == {"jet_pt"}
    ids = np.concatenate([b.jets["jet_pt"] for b in batches]).astype(int)
    wanted = np.flatnonzero(np.isin(full.labels, [0, 2]))
    np.testing.assert_array_equal(ids, wanted[(wanted >= 1000) & (wanted < 8500)])
    labels = np.concatenate([b.labels for b in batches])
    assert set(labels.tolist()) == {0, 2}


def test_read_with_index_arrays(tmp_path):
    path = tmp_path / "jets.h5"
    write(path, make_batch(300, seed=5))
    with JetFile(path) as f:
        np.testing.assert_array_equal(f.read(np.array([250, 3, 3, 40])).jets["jet_pt"], [250, 3, 3, 40])
        chosen = np.zeros(300, bool)
        chosen[[1, 7, 299]] = True
        np.testing.assert_array_equal(f.read(chosen).jets["jet_pt"], [1, 7, 299])
        assert len(f.read(np.array([], dtype=int))) == 0 and len(f.read(np.array([]))) == 0
        with pytest.raises(JbotEdgeError, match=r"out of range \(file has 300 jets, got 5..300\)"):
            f.read(np.array([5, 300]))
        with pytest.raises(JbotEdgeError, match="boolean index has shape"):
            f.read(np.ones(10, bool))
        with pytest.raises(JbotEdgeError, match="integers or booleans"):
            f.read(np.array([1.5]))


# -- writer: bad batches ------------------------------------------------------------------------------------------


def _break(kind: str) -> JetBatch:
    b = make_batch(20, seed=6)
    if kind == "nan":
        b.particles["part_pt"][3, 0] = np.nan
    elif kind == "inf_jet":
        b.jets["jet_mass"][2] = np.inf
    elif kind == "empty_jet":
        for v in b.particles.values():
            v[4] = 0
        b.mask[4] = False
    elif kind == "gap":
        b.mask[5] = [True, False, True, False, False, False]
        for v in b.particles.values():
            v[5] = np.where(b.mask[5], 1.0, 0.0)
    elif kind == "nonzero_padding":
        b.mask[6] = [True, False, False, False, False, False]
        b.particles["part_deta"][6, 3] = 0.5
    elif kind == "label_range":
        b.labels[0] = 3
    elif kind == "wrong_shape":
        b.particles["part_dphi"] = b.particles["part_dphi"][:, :5]
    elif kind == "float_mask":
        b.mask = b.mask.astype(np.float32)
    elif kind == "missing_feature":
        del b.particles["part_pt"]
    elif kind == "no_labels":
        b.labels = None
    return b


@pytest.mark.parametrize("kind, message", [
    ("nan", r"particles/part_pt holds NaN/inf \(first at jet 3\)"),
    ("inf_jet", "jets/jet_mass holds NaN/inf"),
    ("empty_jet", "jet 4 has no particles"),
    ("gap", "mask has gaps"),
    ("nonzero_padding", "part_deta is non-zero in padded slots"),
    ("label_range", r"labels must lie in \[0, 3\)"),
    ("wrong_shape", r"particles/part_dphi has shape \(20, 5\), expected \(20, 6\)"),
    ("float_mask", "mask must be boolean"),
    ("missing_feature", r"missing \['part_pt'\]"),
    ("no_labels", "labels are missing"),
])
def test_writer_rejects_bad_batches_and_leaves_nothing(tmp_path, kind, message):
    path = tmp_path / "out.h5"
    with pytest.raises(JbotEdgeError, match=message) as info:
        write(path, make_batch(10, seed=9), _break(kind))
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_writer_failure_keeps_previous_file_and_refuses_empty_output(tmp_path):
    path = tmp_path / "out.h5"
    write(path, make_batch(10, seed=10))
    before = path.read_bytes()
    with pytest.raises(RuntimeError):
        with JetFileWriter(path, 6, FEATURES, JET_FEATURES, LABELS, source="x") as writer:
            writer.append(make_batch(5, seed=11))
            raise RuntimeError("interrupted")
    assert path.read_bytes() == before  # the old file survives an interrupted rewrite
    with pytest.raises(JbotEdgeError, match="no jets were written"):
        write(tmp_path / "empty.h5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5"]


def test_writer_rejects_bad_construction(tmp_path):
    with pytest.raises(JbotEdgeError, match=r"particle features \['part_pt_rel'\] are required"):
        JetFileWriter(tmp_path / "a.h5", 4, ["part_deta", "part_dphi"], [], LABELS, source="x")
    with pytest.raises(JbotEdgeError, match="label names must be unique"):
        JetFileWriter(tmp_path / "a.h5", 4, FEATURES, [], ["q", "q"], source="x")
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(JbotEdgeError, match="cannot create output directory"):
        write(tmp_path / "file" / "out.h5", make_batch(3))


# -- reader: files that are not (valid) canonical files -----------------------------------------------------------


def test_reader_rejects_missing_truncated_and_foreign_files(tmp_path):
    with pytest.raises(JbotEdgeError, match="does not exist"):
        JetFile(tmp_path / "nope.h5")
    good = tmp_path / "good.h5"
    write(good, make_batch(2000, seed=12))
    data = good.read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 3])
    with pytest.raises(JbotEdgeError, match="cut.h5 is not a readable HDF5 file"):
        JetFile(tmp_path / "cut.h5")
    with h5py.File(tmp_path / "foreign.h5", "w") as h5:
        h5["particle_features"] = np.zeros((3, 30, 4))
    with pytest.raises(JbotEdgeError, match="foreign.h5: attribute 'schema' is None.*jbot-edge convert"):
        JetFile(tmp_path / "foreign.h5")


@pytest.mark.parametrize("edit, message", [
    (lambda h5: h5.attrs.__setitem__("schema_version", 99), "schema_version 99 is not supported"),
    (lambda h5: h5.__delitem__("labels"), "key 'labels' is missing"),
    (lambda h5: h5["particles/part_pt"].resize(5, axis=0), "particles/part_pt has 5 jets, labels have 10"),
])
def test_reader_rejects_inconsistent_canonical_files(tmp_path, edit, message):
    path = tmp_path / "jets.h5"
    write(path, make_batch(10, seed=13))
    with h5py.File(path, "r+") as h5:
        edit(h5)
    with pytest.raises(JbotEdgeError, match=message):
        JetFile(path)


def test_streaming_a_generated_file_matches_its_label_counts(jetnet_file):
    with JetFile(jetnet_file) as f:
        counts = f.counts_per_label()
        seen = {name: 0 for name in f.label_names}
        for batch in f.iter_batches(256, labels=["t", "w"]):
            assert len(batch) <= 256 and batch.mask[:, 0].all()
            for label in batch.labels:
                seen[f.label_names[label]] += 1
    assert seen["t"] == counts["t"] > 0 and seen["w"] == counts["w"] > 0 and seen["q"] == seen["g"] == 0
