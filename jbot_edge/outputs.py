"""Output safety: a command never destroys what the user did not ask it to replace.

Every command that writes calls one of the checks here *before any work*:

* :func:`claim_output_dir` for a directory output (pretrain, evaluate, qat, synth, sweep, report, demo). The
  directory must be new, empty, a previous output of the *same* command (it holds the :data:`MARKER` file that
  command wrote, or for directories made before markers existed the command's own signature files, see
  :data:`SIGNATURES`), or the user passed ``--force``. It must not be, or contain, one of the command's inputs, the
  current directory or one of its parents.
* :func:`claim_output_file` for a file output (generate, convert: ``FILE.h5`` and its sidecars; emulate:
  ``emulate.json``): an existing file is replaced only if ``owned(path)`` says a previous run wrote it, or with
  ``--force``; a directory where a file is expected (``--out .``) is refused.

Both also remove *crash litter*: the temporary siblings that :mod:`jbot_edge.atomic` (and the generator's shard
directories) name ``.<name>.[shards.]<pid>-<random>.tmp``, left behind when a run was killed. An entry is litter only if its process is gone, so a concurrent run's temporaries are never touched; what
was removed is logged.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from jbot_edge.errors import JbotEdgeError, shorten
from jbot_edge.logs import get_logger

log = get_logger(__name__)

#: Written into every output directory by the command that made it: ``{"command": "qat", "created_by": ...}``.
MARKER = ".jbot-edge-output.json"
#: Files that identify a directory written by a command before markers existed (oldest runs keep resuming).
SIGNATURES: dict[str, tuple[str, ...]] = {
    "pretrain": ("teacher.pt", "checkpoints/last.pt"),
    "evaluate": ("evaluate.json",),
    "qat": ("qat_report.json", "prepared.json"),
    "synth": ("firmware.json",),
    "sweep": ("sweep_summary.json", "sweep.csv"),
    "report": ("report.json",),
    "demo": ("demo_summary.json",),
}
#: Temporary names this package owns (see :func:`jbot_edge.atomic.temp_prefix`): the pid of the writer is part of it.
_LITTER = re.compile(r"^\..+\.(?P<pid>\d+)-[A-Za-z0-9_]+\.tmp$")


# -- helpers -------------------------------------------------------------------------------------------------------
def _refuse(option: str, path: Path, why: str) -> JbotEdgeError:
    return JbotEdgeError(f"{option} {_show(path)}: {why}")


def _show(path: str | os.PathLike[str]) -> str:
    """A path for an error line: plain, cut short; quoted (escapes visible) when it holds control characters."""
    text = str(path)
    return shorten(text, quote=any(ord(ch) < 32 or ord(ch) == 127 for ch in text))


def _check_text(path: Path, option: str) -> None:
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in str(path)):
        raise _refuse(option, path, "the path holds control characters (newline, tab, ...); choose a plain name")


def _check_not_cwd(resolved: Path, path: Path, option: str) -> None:
    cwd = Path.cwd().resolve()
    if resolved == cwd or cwd.is_relative_to(resolved):
        raise _refuse(option, path, "is the current directory or one of its parents; name a new directory")
    if resolved == Path.home().resolve() or resolved.parent == resolved:
        raise _refuse(option, path, "is the home or root directory; name a new directory")


def _check_inputs(resolved: Path, path: Path, inputs: Sequence[str | os.PathLike[str] | None], option: str) -> None:
    """The output must not be an input, nor contain one (replacing it would delete the input)."""
    for item in inputs:
        if item is None:
            continue
        source = Path(item).resolve()
        if source == resolved:
            raise _refuse(option, path, f"is also an input of this command ({_show(item)}); write the "
                                        "output somewhere else")
        if source.is_relative_to(resolved):
            raise _refuse(option, path, f"contains an input of this command ({_show(item)}); replacing it "
                                        "would delete that input")


def read_marker(directory: Path) -> str | None:
    """The command recorded in ``directory``'s marker, or None (no marker, or not ours)."""
    try:
        data = json.loads((directory / MARKER).read_text())
    except (OSError, ValueError):
        return None
    command = data.get("command") if isinstance(data, dict) else None
    return command if isinstance(command, str) else None


def owner_of(directory: Path) -> str | None:
    """Which command wrote ``directory``: its marker, else the first command whose signature files it holds."""
    marked = read_marker(directory)
    if marked is not None:
        return marked
    for command, names in SIGNATURES.items():
        if any((directory / name).is_file() for name in names):
            return command
    return None


def mark_output(directory: str | os.PathLike[str], command: str) -> Path:
    """Create ``directory`` (and parents) if needed and record that ``command`` owns it."""
    from jbot_edge import __version__
    from jbot_edge.atomic import write_json

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if read_marker(directory) != command:
        write_json(directory / MARKER, {"command": command, "created_by": f"jbot-edge {__version__}"})
    return directory


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _is_litter(entry: Path) -> bool:
    match = _LITTER.match(entry.name)
    return match is not None and not _pid_alive(int(match["pid"]))


def remove_litter(path: str | os.PathLike[str], command: str, inside: bool = False) -> list[Path]:
    """Remove temporaries of dead runs next to ``path`` (``.<name>.*``) and, with ``inside`` (a directory this
    command owns), anywhere within it."""
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 writes, so only it tidies
        return []
    path = Path(path)
    candidates: list[Path] = []
    if path.parent.is_dir():
        candidates += [p for p in path.parent.iterdir() if p.name.startswith(f".{path.name}.")]
    if inside and path.is_dir() and not path.is_symlink():
        for root, dirs, files in os.walk(path):
            candidates += [Path(root) / name for name in (*dirs, *files)]
    removed = []
    for entry in candidates:
        if not _is_litter(entry):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    if removed:
        log.info("%s: removed %d temporary file(s) left by an interrupted run: %s", command, len(removed),
                 ", ".join(str(p) for p in removed[:5]) + (" ..." if len(removed) > 5 else ""))
    return removed


# -- the checks ----------------------------------------------------------------------------------------------------
def check_output_dir(path: str | os.PathLike[str], command: str, *,
                     inputs: Sequence[str | os.PathLike[str] | None] = (), force: bool = False,
                     resume: bool = False, option: str = "--out") -> Path:
    """Refuse, before any work, a directory output that would destroy something the user did not ask to replace.

    ``resume``: the command continues its own earlier output (its own checks validate the checkpoint), so an
    unmarked directory is accepted, but one another command wrote is still refused.
    """
    path = Path(path)
    _check_text(path, option)
    resolved = path.resolve()
    _check_not_cwd(resolved, path, option)
    _check_inputs(resolved, path, inputs, option)
    for parent in [path, *path.parents]:
        if parent.exists() and not parent.is_dir():
            raise _refuse(option, path, f"{'it' if parent == path else _show(parent)} is an existing file; "
                                        "expected a directory")
        if parent.exists():
            break
    remove_litter(path, command)
    if not path.exists() or not any(path.iterdir()):
        return path
    owner = owner_of(path)
    if owner == command:
        remove_litter(path, command, inside=True)
        return path
    if owner is not None:
        raise _refuse(option, path, f"holds the output of `jbot-edge {owner}`, not of `jbot-edge {command}`; "
                                    "write to a new directory")
    if force or resume:
        return path
    raise _refuse(option, path, f"exists and was not written by `jbot-edge {command}`; choose a new directory or "
                                "pass --force to replace it")


@contextlib.contextmanager
def claim_output_dir(path: str | os.PathLike[str], command: str, *,
                     inputs: Sequence[str | os.PathLike[str] | None] = (), force: bool = False,
                     resume: bool = False, option: str = "--out") -> Iterator[Path]:
    """:func:`check_output_dir`, then run the block; if it fails, a directory the block created is removed again
    (unless it already holds a checkpoint worth resuming), so a refused input leaves no output behind."""
    path = check_output_dir(path, command, inputs=inputs, force=force, resume=resume, option=option)
    existed = path.exists()
    try:
        yield path
    except BaseException as exc:
        if not existed and path.is_dir() and not (path / "checkpoints").exists() and not isinstance(
                exc, KeyboardInterrupt):
            shutil.rmtree(path, ignore_errors=True)
        raise


def claim_output_file(path: str | os.PathLike[str], command: str, *, owned: Callable[[Path], bool],
                      sidecars: Sequence[Path] = (), inputs: Sequence[str | os.PathLike[str] | None] = (),
                      force: bool = False, option: str = "--out") -> Path:
    """Refuse, before any work, a file output (plus ``sidecars`` written next to it) that would replace a file
    the user did not ask to replace, or that names a directory."""
    path = Path(path)
    _check_text(path, option)
    resolved = path.resolve()
    _check_inputs(resolved, path, inputs, option)
    for target in (path, *sidecars):
        if target.is_dir():
            raise _refuse(option, path, f"{_show(target)} is an existing directory; expected a file name "
                                        "such as jets.h5")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise _refuse(option, path, f"{_show(parent)} is an existing file, not a directory")
            break
    remove_litter(path, command)
    if force:
        return path
    if path.exists():
        if not owned(path):
            raise _refuse(option, path, f"exists and was not written by jbot-edge; choose a new name or pass "
                                        "--force to replace it")
        return path
    taken = [p for p in sidecars if p.exists()]
    if taken:
        raise _refuse(option, path, f"{_show(taken[0])} exists but {path.name} does not; choose a new name "
                                    "or pass --force to replace it")
    return path


def is_jet_file(path: Path) -> bool:
    """A canonical jet file (any jbot-edge command that writes jets may replace one)."""
    try:
        import h5py

        from jbot_edge.data.format import SCHEMA_NAME

        with h5py.File(path, "r") as h5:
            return h5.attrs.get("schema") == SCHEMA_NAME
    except (OSError, ValueError):
        return False


def has_json_schema(schema: str) -> Callable[[Path], bool]:
    """``owned`` test for JSON outputs: the file parses and its ``schema`` key is ``schema``."""

    def owned(path: Path) -> bool:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return False
        return isinstance(data, dict) and data.get("schema") == schema

    return owned
