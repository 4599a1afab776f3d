"""``jbot-edge merge``: join canonical jet files into one.

* The N pieces of one ``generate --shard K/N`` run (recognised by ``provenance.piece``; any order) are joined into
  exactly the file the unsharded run writes: same jets, same order (the same seeded interleaving), same provenance,
  plus ``FILE.summary.json`` and ``FILE.config.yaml`` (see :func:`jbot_edge.data.generator.merge_pieces`).
* Any other canonical files are concatenated in the order given. Every per-jet dataset is carried generically
  (each dataset, in any group, whose first axis is the file's jet count — features, mask, labels, and whatever
  else a file holds, e.g. a train/val/test split), so a dataset added to the format later needs no change here.
  The inputs must agree on particle slots and the set of per-jet datasets (names, dtypes, shapes). Label names
  may differ: the output holds their union (the first file's names in its order, then each new name in order of
  appearance) and every file's labels are renumbered into it — e.g. a large background-only file joined to a
  file with signals, to distil a student on more background than the labelled sample holds. The output's
  provenance lists every input's path and provenance under ``merged_from``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from jbot_edge.atomic import atomic_path
from jbot_edge.data.format import CHUNK_JETS
from jbot_edge.data.reader import JetFile
from jbot_edge.errors import JbotEdgeError

_COPY_JETS = 65536


def merge_files(inputs: list[str | os.PathLike[str]], out: str | os.PathLike[str]) -> dict[str, Any]:
    """Merge ``inputs`` into ``out`` (atomically); returns ``{"out", "n_jets", "inputs", "kind"}``."""
    from jbot_edge.data.generator import merge_pieces

    paths = [Path(p) for p in inputs]
    if not paths:
        raise JbotEdgeError("merge: no input files given")
    out = Path(out)
    if out.resolve() in {p.resolve() for p in paths}:
        raise JbotEdgeError(f"--out {out}: is one of the inputs")
    pieces = []
    for path in paths:
        with JetFile(path) as f:
            pieces.append("piece" in f.provenance)
    if all(pieces):
        summary = merge_pieces(paths, out)
        return {"out": str(out), "n_jets": summary["n_jets"], "inputs": [str(p) for p in paths],
                "kind": "generate pieces"}
    if any(pieces):
        raise JbotEdgeError(f"merge: {paths[pieces.index(True)]} is a `generate --shard` piece and "
                            f"{paths[pieces.index(False)]} is not; merge the pieces of one run on their own")
    n = concatenate(paths, out)
    return {"out": str(out), "n_jets": n, "inputs": [str(p) for p in paths], "kind": "concatenation"}


def per_jet_datasets(h5: h5py.File) -> dict[str, h5py.Dataset]:
    """Every dataset whose first axis has one entry per jet (name → dataset)."""
    n = int(h5["labels"].shape[0])
    found: dict[str, h5py.Dataset] = {}

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset) and obj.ndim >= 1 and obj.shape[0] == n:
            found[name] = obj

    h5.visititems(visit)
    return found


def _layout(h5: h5py.File) -> dict[str, tuple[str, tuple[int, ...]]]:
    return {name: (str(ds.dtype), ds.shape[1:]) for name, ds in per_jet_datasets(h5).items()}


def concatenate(paths: list[Path], out: Path) -> int:
    """Concatenate canonical files, every per-jet dataset included; returns the number of jets written."""
    handles = []
    try:
        for path in paths:
            with JetFile(path):  # schema check with the reader's one-line errors
                pass
            handles.append(h5py.File(path, "r"))
        first = handles[0]
        layout = _layout(first)
        for path, h5 in zip(paths[1:], handles[1:]):
            if _attr(h5, "n_particles") != _attr(first, "n_particles"):
                raise JbotEdgeError(f"merge: {path} has n_particles {_attr(h5, 'n_particles')}, {paths[0]} has "
                                    f"{_attr(first, 'n_particles')}")
            if _layout(h5) != layout:
                theirs = _layout(h5)
                differ = sorted(set(layout) ^ set(theirs)) or sorted(k for k in layout if layout[k] != theirs[k])
                raise JbotEdgeError(f"merge: {path} and {paths[0]} hold different per-jet datasets ({differ[:3]})")
        label_names, relabel = union_labels([_attr(h5, "label_names") for h5 in handles])
        total = sum(int(h5["labels"].shape[0]) for h5 in handles)
        with atomic_path(out) as tmp, h5py.File(tmp, "w") as dst:
            for key, value in first.attrs.items():
                dst.attrs[key] = value
            if label_names != _attr(first, "label_names"):
                dst.attrs["label_names"] = json.dumps(label_names)
            dst.attrs["provenance"] = json.dumps({"merged_from": [
                {"path": str(p), "n_jets": int(h5["labels"].shape[0]),
                 "provenance": json.loads(h5.attrs.get("provenance", "{}"))} for p, h5 in zip(paths, handles)]},
                sort_keys=True)
            dst.attrs["n_jets"] = total
            for name, src in per_jet_datasets(first).items():
                ds = dst.create_dataset(name, shape=(total, *src.shape[1:]), dtype=src.dtype,
                                        chunks=(min(CHUNK_JETS, max(total, 1)), *src.shape[1:]),
                                        compression="gzip", shuffle=True)
                for key, value in src.attrs.items():
                    ds.attrs[key] = value
                if name == "labels":
                    ds.attrs["label_names"] = json.dumps(label_names)
                offset = 0
                for h5, table in zip(handles, relabel):
                    part = h5[name]
                    for lo in range(0, part.shape[0], _COPY_JETS):
                        block = part[lo:lo + _COPY_JETS]
                        ds[offset + lo:offset + lo + len(block)] = table[block] if name == "labels" else block
                    offset += part.shape[0]
        return total
    finally:
        for h5 in handles:
            h5.close()


def union_labels(per_file: list[list[str]]) -> tuple[list[str], list[np.ndarray]]:
    """The union of the files' label names (first file's order, then new names as they appear) and, per file, the
    lookup table from its label index to the union's."""
    names: list[str] = []
    for file_names in per_file:
        names += [n for n in file_names if n not in names]
    return names, [np.array([names.index(n) for n in file_names], dtype=np.int64) for file_names in per_file]


def _attr(h5: h5py.File, key: str) -> Any:
    value = h5.attrs.get(key)
    return json.loads(value) if isinstance(value, str) and key == "label_names" else (
        value.item() if hasattr(value, "item") else value)
