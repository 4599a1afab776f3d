"""`generate --shard K/N` + `merge`: the pieces of a sharded run join into exactly the unsharded file, for N = 2
and N = 3 (tiny MPI-off l1 runs, 6 Pythia runs in all); plain files concatenate with every per-jet dataset."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from jbot_edge.config import resolve_config
from jbot_edge.data.generator import GeneratorConfig, generate, preset_file
from jbot_edge.data.merge import merge_files, per_jet_datasets


def _config(**extra) -> GeneratorConfig:
    values = {"processes": ["q", "g", "w"], "n_jets": 12, "seed": 7, "shards": 3, "workers": 1, "mpi": False,
              **extra}
    return resolve_config(GeneratorConfig, cli_values=values, default_file=preset_file("l1"))


def _contents(path) -> dict:
    with h5py.File(path) as h5:
        data = {name: ds[:] for name, ds in per_jet_datasets(h5).items()}
        return {"data": data, "provenance": json.loads(h5.attrs["provenance"]),
                "labels": h5.attrs["label_names"]}


@pytest.fixture(scope="module")
def unsharded(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "jets.h5"
    generate(_config(workers=2), out, show_progress=False)
    return out


@pytest.mark.parametrize("n", [2, 3])
def test_pieces_merge_into_the_unsharded_file(n, unsharded, tmp_path, run_cli):
    pieces = []
    for k in range(n):
        piece = tmp_path / f"piece-{k}.h5"
        if k == 0:  # one piece through the real CLI
            result = run_cli("generate", "--preset", "l1", "--processes", "q,g,w", "--n-jets", 12, "--seed", 7,
                             "--shards", 3, "--no-mpi", "--no-progress", "--shard", f"0/{n}", "--out", piece)
            assert result.returncode == 0, result.stderr[-2000:]
        else:
            generate(_config(), piece, show_progress=False, shard=(k, n))
        pieces.append(piece)
    sizes = [len(h5py.File(p)["labels"]) for p in pieces]
    assert all(s > 0 for s in sizes) and sum(sizes) == 36
    merged = tmp_path / "merged.h5"
    result = run_cli("merge", *reversed(pieces), "--out", merged)  # order of the pieces does not matter
    assert result.returncode == 0, result.stderr[-2000:]
    want, got = _contents(unsharded), _contents(merged)
    assert set(got["data"]) == set(want["data"]) and "labels" in got["data"]
    for name in want["data"]:
        np.testing.assert_array_equal(got["data"][name], want["data"][name], err_msg=name)
    assert got["provenance"] == want["provenance"] and got["labels"] == want["labels"]
    summary = json.loads((tmp_path / "merged.summary.json").read_text())
    assert summary["counts"] == {"q": 12, "g": 12, "w": 12}


def test_incomplete_or_foreign_pieces_are_refused(unsharded, tmp_path, run_cli):
    piece = tmp_path / "p0.h5"
    generate(_config(), piece, show_progress=False, shard=(0, 5))
    result = run_cli("merge", piece, "--out", tmp_path / "m.h5")
    assert result.returncode == 2 and "missing [1, 2, 3, 4]" in result.stderr and not (tmp_path / "m.h5").exists()
    result = run_cli("merge", piece, unsharded, "--out", tmp_path / "m.h5")
    assert result.returncode == 2 and "is a `generate --shard` piece" in result.stderr
    result = run_cli("generate", "--preset", "l1", "--shard", "0/2", "--out", tmp_path / "x.h5")
    assert result.returncode == 2 and "--shard needs --shards" in result.stderr
    result = run_cli("generate", "--preset", "l1", "--shards", "2", "--shard", "2/2", "--out", tmp_path / "x.h5")
    assert result.returncode == 2 and "0 <= K < N" in result.stderr


def test_plain_files_concatenate_with_every_per_jet_dataset(unsharded, tmp_path):
    """A per-jet dataset the format does not know yet (here: a flag per jet) is carried over generically, and the
    held-out split travels with its jets."""
    copies = []
    for i in range(2):
        path = tmp_path / f"c{i}.h5"
        path.write_bytes(unsharded.read_bytes())
        with h5py.File(path, "a") as h5:
            h5.create_dataset("extra_flag", data=np.full(len(h5["labels"]), i, dtype=np.int8))
        copies.append(path)
    merge_files(copies, tmp_path / "both.h5")
    want = _contents(unsharded)["data"]
    got = _contents(tmp_path / "both.h5")
    np.testing.assert_array_equal(got["data"]["extra_flag"], np.repeat([0, 1], len(want["labels"])))
    np.testing.assert_array_equal(got["data"]["split"], np.concatenate([want["split"], want["split"]]))
    for name, values in want.items():
        np.testing.assert_array_equal(got["data"][name], np.concatenate([values, values]))
    assert [m["path"] for m in got["provenance"]["merged_from"]] == [str(p) for p in copies]


def test_files_with_other_labels_merge_into_the_union_of_names(unsharded, tmp_path):
    """A file whose labels differ (here: names permuted and one new, as a background-only or signal-only file has)
    joins with every jet keeping its label *name*; the union lists the first file's names, then the new ones."""
    from jbot_edge.data.reader import JetFile

    other = tmp_path / "other.h5"
    other.write_bytes(unsharded.read_bytes())
    with h5py.File(other, "a") as h5:
        renamed = json.dumps(["w", "t", "q"])  # the first file's q, g, w become w, t, q here
        h5.attrs["label_names"] = renamed
        h5["labels"].attrs["label_names"] = renamed
    merge_files([unsharded, other], tmp_path / "both.h5")
    with h5py.File(unsharded) as h5:
        first = h5["labels"][:]
    with JetFile(tmp_path / "both.h5") as merged:
        assert merged.label_names == ["q", "g", "w", "t"]
    with h5py.File(tmp_path / "both.h5") as h5:
        labels = h5["labels"][:]
        assert json.loads(h5["labels"].attrs["label_names"]) == ["q", "g", "w", "t"]
    names = np.array(["q", "g", "w", "t"])
    np.testing.assert_array_equal(names[labels[:len(first)]], np.array(["q", "g", "w"])[first])
    np.testing.assert_array_equal(names[labels[len(first):]], np.array(["w", "t", "q"])[first])
