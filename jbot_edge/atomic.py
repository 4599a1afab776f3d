"""Atomic writes: outputs appear complete or not at all.

Every artifact is written to a temporary sibling and renamed into place, so an interrupted run never leaves a
half-written file that a later stage could mistake for a finished one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jbot_edge.errors import JbotEdgeError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _check_parent_writable(path: Path) -> None:
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise JbotEdgeError(f"cannot create output directory {parent}: {exc.strerror}") from exc
    if not os.access(parent, os.W_OK):
        raise JbotEdgeError(f"output directory {parent} is not writable")


def temp_prefix(path: Path, tag: str = "") -> str:
    """Name prefix of a temporary sibling of ``path``: ``.<name>.[<tag>.]<pid>-``. With the ``.tmp`` suffix this is
    the pattern :mod:`jbot_edge.outputs` recognises as litter once process ``<pid>`` is gone."""
    return f".{path.name}.{tag + '.' if tag else ''}{os.getpid()}-"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it onto ``path``, on error delete it."""
    path = Path(path)
    _check_parent_writable(path)
    fd, tmp_name = tempfile.mkstemp(prefix=temp_prefix(path), suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates 0600; give the artifact the permissions a plain open() would have.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike[str], owner: str | None = None) -> Iterator[Path]:
    """Yield a temporary directory next to ``path``; on success it replaces ``path`` as a whole.

    ``owner``: the command writing it; its marker (:data:`jbot_edge.outputs.MARKER`) goes in with the contents, so
    a later run of the same command may replace the directory (callers check that first, with
    :func:`jbot_edge.outputs.check_output_dir`).
    """
    path = Path(path)
    _check_parent_writable(path)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(path), suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if owner is not None:
            from jbot_edge.outputs import mark_output

            mark_output(tmp, owner)
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700
        if path.exists():
            trash = path.with_name(f"{temp_prefix(path)}old.tmp")
            shutil.rmtree(trash, ignore_errors=True)
            os.replace(path, trash)
            os.replace(tmp, path)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` as indented JSON atomically; numpy scalars/arrays and paths are converted."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=_json_default, allow_nan=False) + "\n")
    return path


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path
