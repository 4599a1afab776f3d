"""Validation of canonical jet files as they are read (used by :class:`jbot_edge.data.reader.JetFile`).

Two levels, both cheap:

* :func:`check_structure` when a file is opened: the schema attributes, ``label_names`` (a JSON list of unique
  non-empty strings), and every dataset's dtype kind and shape against ``labels`` — metadata only, no jet is read.
* :func:`check_block` on every block that is read: particle and jet features finite, labels inside
  ``[0, len(label_names))``. The values are in memory already, so this costs one pass over what the caller reads,
  and a damaged jet is reported wherever it is, by file, dataset and jet index, before any stage uses it.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from jbot_edge.data.format import SCHEMA_NAME, SCHEMA_VERSION, JetBatch
from jbot_edge.errors import JbotEdgeError, shorten


def _attr(h5: h5py.File, key: str) -> object:
    value = h5.attrs.get(key)
    return value.decode() if isinstance(value, bytes) else value


def parse_label_names(raw: object, path: Path) -> list[str]:
    """``label_names`` attribute → list of unique non-empty strings, or one error line naming the file."""
    if raw is None:
        raise JbotEdgeError(f"{path}: attribute 'label_names' is missing (expected a JSON list such as [\"q\", \"g\"])")
    try:
        names = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
    except ValueError:
        raise JbotEdgeError(f"{path}: attribute 'label_names' is not JSON (got {shorten(raw)})") from None
    if (not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names)
            or len(set(names)) != len(names)):
        raise JbotEdgeError(f"{path}: attribute 'label_names' must be a JSON list of unique non-empty strings "
                            f"(got {shorten(names)})")
    return names


def _expect(ds: h5py.Dataset, path: Path, name: str, shape: tuple[int, ...], kinds: str, what: str) -> None:
    if ds.ndim == len(shape) and ds.shape[0] != shape[0]:
        raise JbotEdgeError(f"{path}: {name} has {ds.shape[0]} jets, labels have {shape[0]}")
    if ds.shape != shape:
        raise JbotEdgeError(f"{path}: dataset '{name}' has shape {ds.shape}, expected {shape}")
    if ds.dtype.kind not in kinds:
        raise JbotEdgeError(f"{path}: dataset '{name}' has dtype {ds.dtype}, expected {what}")


def check_structure(h5: h5py.File, path: Path) -> list[str]:
    """Check the attributes and dataset shapes of an open canonical file; returns its label names."""
    schema = _attr(h5, "schema")
    if schema != SCHEMA_NAME:
        raise JbotEdgeError(f"{path}: attribute 'schema' is {shorten(schema)}, expected {SCHEMA_NAME!r} "
                            "(convert foreign files with `jbot-edge convert`)")
    version = _attr(h5, "schema_version")
    if not isinstance(version, (int, np.integer)) or int(version) != SCHEMA_VERSION:
        shown = int(version) if isinstance(version, (int, np.integer)) else shorten(version)
        raise JbotEdgeError(f"{path}: schema_version {shown} is not supported (expected {SCHEMA_VERSION})")
    names = parse_label_names(h5.attrs.get("label_names"), path)
    for key in ("particles", "particles/mask", "labels"):
        if key not in h5:
            raise JbotEdgeError(f"{path}: key '{key}' is missing")
    labels = h5["labels"]
    if not isinstance(labels, h5py.Dataset) or labels.ndim != 1:
        raise JbotEdgeError(f"{path}: dataset 'labels' must be one integer per jet")
    n = labels.shape[0]
    _expect(labels, path, "labels", (n,), "iu", "integers")
    mask = h5["particles/mask"]
    if not isinstance(mask, h5py.Dataset) or mask.ndim != 2:
        raise JbotEdgeError(f"{path}: dataset 'particles/mask' must be [jets, particle slots]")
    _expect(mask, path, "particles/mask", (n, mask.shape[1]), "b", "booleans")
    for group, shape in (("particles", (n, mask.shape[1])), ("jets", (n,))):
        if group not in h5:
            continue
        for key, ds in h5[group].items():
            if isinstance(ds, h5py.Dataset) and key != "mask":
                _expect(ds, path, f"{group}/{key}", shape, "fiu", "numbers")
    return names


def check_block(batch: JetBatch, path: Path, first_jet: int, n_labels: int) -> None:
    """Finite features and in-range labels in a block read from ``path`` starting at jet ``first_jet``."""
    for group, arrays in (("particles", batch.particles), ("jets", batch.jets)):
        for name, values in arrays.items():
            bad = ~np.isfinite(values)
            if bad.any():
                jet = first_jet + int(np.argwhere(bad)[0][0])
                raise JbotEdgeError(f"{path}: dataset '{group}/{name}' holds NaN/inf (first at jet {jet}); "
                                    "expected finite values")
    if batch.labels is not None and len(batch.labels):
        out_of_range = (batch.labels < 0) | (batch.labels >= n_labels)
        if out_of_range.any():
            index = int(np.argmax(out_of_range))
            raise JbotEdgeError(f"{path}: dataset 'labels' holds {int(batch.labels[index])} at jet "
                                f"{first_jet + index}; expected 0..{n_labels - 1} (one per entry of label_names)")
