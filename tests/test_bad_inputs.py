"""Damaged and hostile inputs through the real CLI: exit 2, exactly one ``error:`` line, no traceback, no output
left behind, no user file touched, no command executed.

Every artifact type (jet file, config/override, teacher, checkpoint, score head, student, firmware directory, board
file) and the output-path rules meet their damages (missing, truncated, wrong type/shape, NaN/inf, out of range,
tampered, hostile string). Each damaged artifact is a copy of a small real one from the session fixtures
(``l1_file``, ``l1_teacher_run``, ``tiny_sweep``) edited in place. All cases run in ONE interpreter
(tests/bad_inputs_driver.py calls the CLI entry point once per case, in the case's own directory), so the import cost
is paid once; the checks below are per case.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from jbot_edge.config import packaged_config

REPO_ROOT = Path(__file__).resolve().parent.parent
SMALL = str(packaged_config("pretrain/small.yaml"))
MARKER_NAME = "PWNED"
BOMB = "\n".join(["a: &a [x, x, x, x, x, x, x, x, x]"] +
                 [f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 9) + "]" for i in range(8)])


class Exploit:
    """Unpickling this runs ``touch MARKER``: ``weights_only=True`` must refuse it before it runs."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@dataclass
class Case:
    id: str
    argv: list[str]
    match: str  # regex the error line must match
    setup: Callable[[Path], None] = lambda d: None
    expect_code: int = 2
    may_remove: list[str] = field(default_factory=list)  # files the case is meant to delete (crash litter)


# -- damage helpers -------------------------------------------------------------------------------------------------
def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def edit_torch(path: Path, edit: Callable[[dict], None]) -> None:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    edit(payload)
    torch.save(payload, path)


def edit_json(path: Path, edit: Callable[[dict], None]) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def edit_h5(path: Path, edit: Callable[[h5py.File], None]) -> None:
    with h5py.File(path, "r+") as h5:
        edit(h5)


def first_float_key(state: dict) -> str:
    return next(k for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point() and v.numel() > 1)


def nan_weights(key: str) -> Callable[[dict], None]:
    def edit(payload: dict) -> None:
        state = payload[key]
        name = first_float_key(state)
        state[name] = torch.full_like(state[name], float("nan"))

    return edit


def misshape_weights(key: str) -> Callable[[dict], None]:
    def edit(payload: dict) -> None:
        state = payload[key]
        state[first_float_key(state)] = torch.zeros(3)

    return edit


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# -- the cases ------------------------------------------------------------------------------------------------------
def build_cases(sources: dict[str, Path]) -> list[Case]:
    """``sources``: real artifacts to copy (jets, run, student, firmware)."""
    jets, run = sources["jets"], sources["run"]
    pretrain = ["pretrain", "--config", SMALL, "--train-labels", "q,g", "--max-steps", "1", "optim.batch_size=128"]
    resume = ["pretrain", "--config", SMALL, "--data", str(jets), "--out", "run", "--train-labels", "q,g",
              "--max-steps", "16", "optim.batch_size=128", "--resume"]
    evaluate = ["evaluate", "--run", "run", "--data", str(jets), "--out", "eval", "--background", "q,g",
                "finetune.enabled=false"]
    qat = ["qat", "--run", "run", "--data", str(jets), "--out", "student-new", "--epochs", "1"]
    synth = ["synth", "--student", "student", "--out", "fw-new"]
    emulate = ["emulate", "--firmware", "fw", "--data", str(jets), "--n", "20", "--out", "emu"]

    def copy(name: str) -> Callable[[Path], None]:
        def setup(d: Path) -> None:
            src = sources[name]
            if src.is_dir():
                shutil.copytree(src, d / name, symlinks=False)
            else:
                shutil.copy2(src, d / name)
        return setup

    def then(*steps: Callable[[Path], None]) -> Callable[[Path], None]:
        def setup(d: Path) -> None:
            for step in steps:
                step(d)
        return setup

    def on(rel: str, edit: Callable[[Path], None]) -> Callable[[Path], None]:
        return lambda d: edit(d / rel)

    def write(rel: str, text: str) -> Callable[[Path], None]:
        def setup(d: Path) -> None:
            (d / rel).parent.mkdir(parents=True, exist_ok=True)
            (d / rel).write_text(text)
        return setup

    def malicious(rel: str) -> Callable[[Path], None]:
        return lambda d: torch.save({"format": Exploit(d / MARKER_NAME)}, d / rel)

    def remove(rel: str) -> Callable[[Path], None]:
        return lambda d: (d / rel).unlink()

    jet = lambda edit: then(copy("jets.h5"), on("jets.h5", edit))  # noqa: E731
    jet_pretrain = pretrain + ["--data", "jets.h5", "--out", "run-new"]
    jet_qat = ["qat", "--run", "run", "--data", "jets.h5", "--out", "student-new", "--epochs", "1"]
    cases = [
        # jet file
        Case("jets-missing", jet_pretrain, r"jets\.h5 does not exist"),
        Case("jets-truncated", jet_pretrain, r"not a readable HDF5 file", jet(truncate)),
        Case("jets-foreign-schema", jet_pretrain, r"attribute 'schema'",
             jet(lambda p: edit_h5(p, lambda h: h.attrs.__setitem__("schema", "other")))),
        Case("jets-no-label-names", jet_pretrain, r"'label_names' is missing",
             jet(lambda p: edit_h5(p, lambda h: h.attrs.__delitem__("label_names")))),
        Case("jets-label-names-not-json", jet_pretrain, r"'label_names' is not JSON",
             jet(lambda p: edit_h5(p, lambda h: h.attrs.__setitem__("label_names", "q, g, w")))),
        Case("jets-label-names-duplicate", jet_pretrain, r"'label_names' must be a JSON list of unique",
             jet(lambda p: edit_h5(p, lambda h: h.attrs.__setitem__("label_names", '["q","q","w","z","t"]')))),
        Case("jets-nan-particles", jet_pretrain, r"'particles/part_deta' holds NaN/inf \(first at jet 3\)",
             jet(lambda p: edit_h5(p, lambda h: h["particles/part_deta"].__setitem__((3, 0), np.nan)))),
        Case("jets-inf-particles-at-qat", jet_qat, r"'particles/\w+' holds NaN/inf \(first at jet 1500\)",
             then(copy("run"), jet(lambda p: edit_h5(p, lambda h: [h[f"particles/{k}"].__setitem__(
                 (1500, 0), np.inf) for k in h["particles"] if k != "mask"])))),
        Case("jets-negative-label", jet_qat, r"'labels' holds -1 at jet 7",
             then(copy("run"), jet(lambda p: edit_h5(p, lambda h: h["labels"].__setitem__(7, -1))))),
        Case("jets-label-out-of-range", jet_pretrain, r"'labels' holds 9 at jet 11",
             jet(lambda p: edit_h5(p, lambda h: h["labels"].__setitem__(11, 9)))),
        Case("jets-wrong-shape", jet_pretrain, r"part_eta has 5 jets, labels have",
             jet(lambda p: edit_h5(p, lambda h: h["particles/part_eta"].resize(5, axis=0)))),
        Case("jets-wrong-dtype", jet_pretrain, r"dataset 'labels' has dtype float",
             jet(lambda p: edit_h5(p, lambda h: (h.__delitem__("labels"), h.create_dataset(
                 "labels", data=np.zeros(2000, np.float32)))))),
        Case("jets-path-too-long", pretrain + ["--data", "j" * 5000 + ".h5", "--out", "o"], r"path is too long"),
        Case("jets-hostile-schema", jet_pretrain, r"attribute 'schema' is 'xxxx.*more characters",
             jet(lambda p: edit_h5(p, lambda h: h.attrs.__setitem__("schema", "x" * 100_000)))),
        # config and overrides
        Case("config-epochs-inf", pretrain + ["--data", str(jets), "--out", "o", "--epochs", "inf"],
             r"optim\.epochs.*finite"),
        Case("config-epochs-huge", pretrain + ["--data", str(jets), "--out", "o", "--epochs", "1e300"],
             r"optim\.epochs.*less than or equal"),
        Case("config-lr-inf", pretrain + ["--data", str(jets), "--out", "o", "optim.base_lr=.inf"],
             r"optim\.base_lr.*finite"),
        Case("config-lr-nan", pretrain + ["--data", str(jets), "--out", "o", "optim.base_lr=.nan"],
             r"optim\.base_lr.*finite"),
        Case("config-unknown-key", pretrain + ["--data", str(jets), "--out", "o", "optim.bogus=1"],
             r"unknown key 'optim\.bogus'"),
        Case("config-huge-value", pretrain + ["--data", str(jets), "--out", "o", "optim.base_lr=" + "9" * 50_000 + "x"],
             r"optim\.base_lr.*more characters"),
        Case("config-alias-bomb", pretrain + ["--data", str(jets), "--out", "o", "--config", "bomb.yaml"],
             r"bomb\.yaml is not valid YAML: .*alias", write("bomb.yaml", BOMB)),
        Case("config-python-tag", pretrain + ["--data", str(jets), "--out", "o", "--config", "evil.yaml"],
             r"evil\.yaml is not valid YAML",
             lambda d: (d / "evil.yaml").write_text(f"x: !!python/object/apply:os.system ['touch {d / MARKER_NAME}']")),
        Case("config-not-a-mapping", pretrain + ["--data", str(jets), "--out", "o", "--config", "list.yaml"],
             r"must hold a mapping", write("list.yaml", "- 1\n- 2\n")),
        Case("config-missing-file", pretrain + ["--data", str(jets), "--out", "o", "--config", "nope.yaml"],
             r"nope\.yaml does not exist"),
        Case("config-clock-inf", synth + ["--clock-ns", "inf"], r"hls\.clock_ns.*finite", copy("student")),
        Case("config-project-name-cmd", synth + [f"hls.project_name=x;touch {MARKER_NAME};"],
             r"hls\.project_name.*pattern", copy("student")),
        Case("config-project-name-subst", synth + [f"hls.project_name=$(touch {MARKER_NAME})"],
             r"hls\.project_name.*pattern", copy("student")),
        Case("config-part-tcl", synth + [f"hls.part='[exec touch {MARKER_NAME}]'"], r"hls\.part.*pattern",
             copy("student")),
        # teacher.pt (through evaluate)
        Case("teacher-missing", evaluate, r"teacher\.pt does not exist", then(copy("run"), remove("run/teacher.pt"))),
        Case("teacher-truncated", evaluate, r"teacher\.pt cannot be read", then(copy("run"), on("run/teacher.pt",
                                                                                               truncate))),
        Case("teacher-garbage", evaluate, r"teacher\.pt cannot be read",
             then(copy("run"), write("run/teacher.pt", "not a checkpoint\n" * 100))),
        Case("teacher-malicious-pickle", evaluate, r"teacher\.pt cannot be read",
             then(copy("run"), malicious("run/teacher.pt"))),
        Case("teacher-version-string", evaluate, r"teacher\.pt: key 'version'",
             then(copy("run"), on("run/teacher.pt", lambda p: edit_torch(p, lambda t: t.__setitem__("version", "x"))))),
        Case("teacher-no-input-spec", evaluate, r"teacher\.pt: key 'input_spec': Field required",
             then(copy("run"), on("run/teacher.pt", lambda p: edit_torch(p, lambda t: t.pop("input_spec"))))),
        Case("teacher-input-spec-type", evaluate, r"teacher\.pt: key 'input_spec'",
             then(copy("run"), on("run/teacher.pt", lambda p: edit_torch(p, lambda t: t.__setitem__(
                 "input_spec", [1, 2]))))),
        Case("teacher-nan-weights", evaluate, r"teacher\.pt: key 'state_dict'.*NaN",
             then(copy("run"), on("run/teacher.pt", lambda p: edit_torch(p, nan_weights("state_dict"))))),
        Case("teacher-wrong-shape", evaluate, r"teacher\.pt: model_config/state_dict is inconsistent",
             then(copy("run"), on("run/teacher.pt", lambda p: edit_torch(p, misshape_weights("state_dict"))))),
        Case("teacher-model-config-tampered", evaluate, r"teacher\.pt: model_config/state_dict is inconsistent",
             then(copy("run"), on("run/teacher.pt", lambda p: edit_torch(p, lambda t: t["model_config"].__setitem__(
                 "embed_dim", "wide"))))),
        # pretrain checkpoint (through --resume)
        Case("checkpoint-missing", resume, r"no checkpoint at", then(copy("run"), remove("run/checkpoints/last.pt"))),
        Case("checkpoint-truncated", resume, r"last\.pt cannot be read",
             then(copy("run"), on("run/checkpoints/last.pt", truncate))),
        Case("checkpoint-no-config", resume, r"last\.pt: key 'config': Field required",
             then(copy("run"), on("run/checkpoints/last.pt", lambda p: edit_torch(p, lambda c: c.pop("config"))))),
        Case("checkpoint-no-rng", resume, r"last\.pt: key 'rng': Field required",
             then(copy("run"), on("run/checkpoints/last.pt", lambda p: edit_torch(p, lambda c: c.pop("rng"))))),
        Case("checkpoint-step-negative", resume, r"last\.pt: key 'step'",
             then(copy("run"), on("run/checkpoints/last.pt", lambda p: edit_torch(
                 p, lambda c: c.__setitem__("step", -5))))),
        # score head (through qat)
        Case("score-head-missing", qat, r"has no score head", then(copy("run"), remove("run/score_head.json"))),
        Case("score-head-not-json", qat, r"score_head\.json is not valid JSON",
             then(copy("run"), write("run/score_head.json", "{nope"))),
        Case("score-head-no-arrays", qat, r"score_head\.json: key 'arrays': Field required",
             then(copy("run"), on("run/score_head.json", lambda p: edit_json(p, lambda m: m.pop("arrays"))))),
        Case("score-head-npz-tampered", qat, r"score_head\.npz does not match",
             then(copy("run"), on("run/score_head.npz", truncate))),
        Case("score-head-nan", qat, r"array '\w+' is not finite", then(copy("run"), nan_score_head)),
        Case("score-head-hostile-name", qat, r"unknown scorer .*more characters",
             then(copy("run"), on("run/score_head.json", lambda p: edit_json(p, lambda m: m.__setitem__(
                 "name", "$(touch PWNED)" * 5000))))),
        # student.pt (through synth)
        Case("student-missing", synth, r"student\.pt does not exist",
             then(copy("student"), remove("student/student.pt"))),
        Case("student-truncated", synth, r"not a readable student checkpoint",
             then(copy("student"), on("student/student.pt", truncate))),
        Case("student-malicious-pickle", synth, r"not a readable student checkpoint",
             then(copy("student"), malicious("student/student.pt"))),
        Case("student-no-state-dict", synth, r"student\.pt: key 'state_dict': Field required",
             then(copy("student"), on("student/student.pt", lambda p: edit_torch(p, lambda s: s.pop("state_dict"))))),
        Case("student-config-type", synth, r"student\.pt: key 'student_config'",
             then(copy("student"), on("student/student.pt", lambda p: edit_torch(
                 p, lambda s: s.__setitem__("student_config", "deepsets"))))),
        Case("student-nan-weights", synth, r"student\.pt: key 'state_dict'.*NaN",
             then(copy("student"), on("student/student.pt", lambda p: edit_torch(p, nan_weights("state_dict"))))),
        Case("student-wrong-shape", synth, r"student\.pt: student_config/state_dict is inconsistent",
             then(copy("student"), on("student/student.pt", lambda p: edit_torch(p, misshape_weights("state_dict"))))),
        # firmware directory (through emulate)
        Case("firmware-missing", emulate, r"firmware directory fw does not exist"),
        Case("firmware-no-json", emulate, r"no firmware\.json", then(copy("fw"), remove("fw/firmware.json"))),
        Case("firmware-json-corrupt", emulate, r"firmware\.json is not valid JSON",
             then(copy("fw"), on("fw/firmware.json", truncate))),
        Case("firmware-no-n-inputs", emulate, r"firmware\.json: key 'n_inputs': Field required",
             then(copy("fw"), on("fw/firmware.json", lambda p: edit_json(p, lambda m: m.pop("n_inputs"))))),
        Case("firmware-n-inputs-type", emulate, r"firmware\.json: key 'n_inputs'",
             then(copy("fw"), on("fw/firmware.json", lambda p: edit_json(p, lambda m: m.__setitem__(
                 "n_inputs", "many"))))),
        Case("firmware-nan-lsb", emulate, r"firmware\.json: key 'output_lsb'.*finite",
             then(copy("fw"), on("fw/firmware.json", lambda p: p.write_text(
                 re.sub(r'"output_lsb": [^,]+', '"output_lsb": NaN', p.read_text()))))),
        Case("firmware-hostile-project", emulate, r"firmware\.json: key 'project_name'",
             then(copy("fw"), on("fw/firmware.json", lambda p: edit_json(p, lambda m: m.__setitem__(
                 "project_name", f"x;touch {MARKER_NAME}"))))),
        Case("firmware-absolute-library", emulate, r"firmware\.json: key 'library'.*relative",
             then(copy("fw"), on("fw/firmware.json", lambda p: edit_json(p, lambda m: m.__setitem__(
                 "library", "/usr/lib/x86_64-linux-gnu/libc.so.6"))))),
        Case("firmware-no-student", emulate, r"fw/student\.pt does not exist",
             then(copy("fw"), remove("fw/student.pt"))),
        # board file (through synth)
        Case("board-missing", synth + ["--board", "boards/none.yaml"], r"board file boards/none\.yaml does not exist",
             copy("student")),
        Case("board-unknown-hostile", synth + ["--board", "vu" * 5000], r"unknown board .*more characters",
             copy("student")),
        Case("board-tcl-part", synth + ["--board", "board.yaml"], r"key 'part'.*pattern",
             then(copy("student"), write("board.yaml", board_yaml(part=f'"[exec touch {MARKER_NAME}]"')))),
        Case("board-negative-clock", synth + ["--board", "board.yaml"], r"key 'clock_ns'",
             then(copy("student"), write("board.yaml", board_yaml(clock="-5")))),
        Case("board-inf-clock", synth + ["--board", "board.yaml"], r"key 'clock_ns'.*finite",
             then(copy("student"), write("board.yaml", board_yaml(clock=".inf")))),
        Case("board-alias-bomb", synth + ["--board", "board.yaml"], r"not valid YAML: .*alias",
             then(copy("student"), write("board.yaml", BOMB))),
        Case("board-truncated", synth + ["--board", "board.yaml"], r"board",
             then(copy("student"), write("board.yaml", board_yaml()[:60]))),
        # output paths: nothing the user did not ask to replace is destroyed, and the refusal comes first
        Case("out-qat-into-teacher-run", ["qat", "--run", "run", "--data", str(jets), "--out", "run"],
             r"--out run: is also an input", copy("run")),
        Case("out-qat-into-run-checkpoints", ["qat", "--run", "run", "--data", str(jets), "--out", "run/checkpoints"],
             r"not written by `jbot-edge qat`", copy("run")),
        Case("out-synth-user-dir", synth[:-1] + ["mine"], r"--out mine: exists and was not written by `jbot-edge synth`",
             then(copy("student"), write("mine/notes.txt", "my notes"))),
        Case("out-synth-other-command", synth[:-1] + ["run"], r"holds the output of `jbot-edge pretrain`",
             then(copy("student"), copy("run"))),
        Case("out-synth-file", synth[:-1] + ["afile"], r"--out afile: it is an existing file",
             then(copy("student"), write("afile", "data"))),
        Case("out-synth-dot", synth[:-1] + ["."], r"--out \.: is the current directory", copy("student")),
        Case("out-synth-contains-input", ["synth", "--student", "box/student", "--out", "box"],
             r"contains an input", lambda d: shutil.copytree(sources["student"], d / "box" / "student")),
        Case("out-evaluate-user-dir", [a if a != "eval" else "mine" for a in evaluate],
             r"--out mine: exists and was not written by `jbot-edge evaluate`",
             then(copy("run"), write("mine/notes.txt", "my notes"))),
        Case("out-pretrain-user-dir", pretrain + ["--data", str(jets), "--out", "mine"],
             r"not written by `jbot-edge pretrain`", write("mine/notes.txt", "my notes")),
        Case("out-generate-dot", ["generate", "--out", ".", "--n-jets", "10"], r"is an existing directory"),
        Case("out-generate-user-file", ["generate", "--out", "mine.h5", "--n-jets", "10"],
             r"exists and was not written by jbot-edge", write("mine.h5", "precious")),
        Case("out-generate-sidecar", ["generate", "--out", "new.h5", "--n-jets", "10"],
             r"new\.summary\.json exists", write("new.summary.json", "{}")),
        Case("out-convert-user-file", ["convert", "--from", "jetnet", "src.hdf5", "--out", "mine.h5"],
             r"exists and was not written by jbot-edge", then(write("mine.h5", "precious"), write("src.hdf5", "x"))),
        Case("out-emulate-into-file", emulate[:-1] + ["afile"], r"afile is an existing file",
             then(copy("fw"), write("afile", "data"))),
        Case("out-emulate-user-json", emulate[:-1] + ["mine"], r"emulate\.json: exists and was not written",
             then(copy("fw"), write("mine/emulate.json", '{"mine": 1}'))),
        Case("out-report-user-dir", ["report", "--run", "run", "--out", "mine"],
             r"not written by `jbot-edge report`", then(copy("run"), write("mine/notes.txt", "my notes"))),
        Case("out-sweep-user-dir", ["sweep", "--config", str(REPO_ROOT / "configs/sweep/tiny.yaml"), "--run", "run",
                                    "--data", str(jets), "--out", "mine"],
             r"not written by `jbot-edge sweep`", then(copy("run"), write("mine/notes.txt", "my notes"))),
        Case("out-demo-user-dir", ["demo", "--out", "mine"], r"not written by `jbot-edge demo`",
             write("mine/notes.txt", "my notes")),
        Case("out-control-characters", synth[:-1] + ["fw\nx"], r"control characters", copy("student")),
        # crash litter: a killed emulate left its temporary file; the next emulate removes it (then fails on input)
        Case("litter-removed", emulate, r"no firmware\.json",
             then(copy("fw"), remove("fw/firmware.json"),
                  lambda d: write(f"emu/.emulate.json.{dead_pid()}-abcd1234.tmp", "{")(d),
                  write(f"emu/.emulate.json.{os.getpid()}-live1234.tmp", "a live run's temporary"),
                  write("emu/.emulate.json.notes.tmp", "not a temporary name of ours")),
             may_remove=["emu/.emulate.json.*-abcd1234.tmp"]),
    ]
    return cases


def board_yaml(part: str = "xcvu13p-flga2577-2-e", clock: str = "4.0") -> str:
    return (f"name: custom\npart: {part}\nclock_ns: {clock}\n"
            "resources: {LUT: 1728000, FF: 3456000, DSP: 12288, BRAM: 2688}\n")


def nan_score_head(d: Path) -> None:
    """NaN arrays with a consistent checksum: only the finiteness check can catch it."""
    from jbot_edge.evaluate.score_head import file_sha256

    npz, meta = d / "run" / "score_head.npz", d / "run" / "score_head.json"
    with np.load(npz) as arrays:
        data = {k: np.full_like(arrays[k], np.nan) if arrays[k].dtype.kind == "f" else arrays[k] for k in arrays.files}
    with open(npz, "wb") as fh:
        np.savez(fh, **data)
    edit_json(meta, lambda m: m.__setitem__("npz_sha256", file_sha256(npz)))


# -- running them ---------------------------------------------------------------------------------------------------
def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file() or p.is_symlink()}


@pytest.fixture(scope="module")
def sources(tmp_path_factory, l1_file, l1_teacher_run, tiny_sweep) -> dict[str, Path]:
    return {"jets": l1_file, "jets.h5": l1_file, "run": l1_teacher_run, "student": tiny_sweep.run / "student",
            "fw": tiny_sweep.run / "firmware"}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory, sources) -> dict[str, tuple[Case, Path, dict, dict, dict]]:
    """Build every case's directory, snapshot it, run all cases in one driver process, snapshot again."""
    root = tmp_path_factory.mktemp("bad-inputs")
    cases = build_cases(sources)
    before, spec = {}, []
    for case in cases:
        directory = root / case.id
        directory.mkdir()
        case.setup(directory)
        before[case.id] = snapshot(directory)
        spec.append({"id": case.id, "cwd": str(directory), "argv": case.argv})
    (root / "cases.json").write_text(json.dumps(spec))
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(REPO_ROOT)}
    subprocess.run([sys.executable, str(Path(__file__).parent / "bad_inputs_driver.py"), str(root / "cases.json"),
                    str(root / "results.json")], check=True, env=env, timeout=900)
    results = json.loads((root / "results.json").read_text())
    return {c.id: (c, root / c.id, before[c.id], snapshot(root / c.id), results[c.id]) for c in cases}


def _case_ids() -> list[str]:
    fake = {k: Path("/nonexistent") / k for k in ("jets", "jets.h5", "run", "student", "fw")}
    return [c.id for c in build_cases(fake)]


@pytest.mark.parametrize("case_id", _case_ids())
def test_bad_input_is_one_line_error_with_no_side_effect(outcomes, case_id):
    case, directory, before, after, result = outcomes[case_id]
    assert result["traceback"] is None, result["traceback"]
    assert "Traceback" not in result["stderr"]
    errors = [line for line in result["stderr"].splitlines() if line.startswith("error:")]
    assert result["code"] == case.expect_code, result["stderr"][-2000:]
    assert len(errors) == 1, result["stderr"][-2000:]
    assert len(errors[0]) < 1200, errors[0][:300]
    assert re.search(case.match, errors[0]), errors[0]
    # Nothing written, nothing deleted or modified (except litter the case is about), nothing executed.
    allowed = {k for k in before if any(Path(k).match(p) for p in case.may_remove)}
    assert {k: v for k, v in after.items()} == {k: v for k, v in before.items() if k not in allowed}
    assert not list(directory.rglob(MARKER_NAME))


def test_crash_litter_of_a_dead_run_is_removed_and_reported(outcomes):
    case, directory, before, after, result = outcomes["litter-removed"]
    assert [k for k in before if re.match(r"emu/\.emulate\.json\.\d+-abcd1234\.tmp", k)]
    assert not [k for k in after if re.match(r"emu/\.emulate\.json\.\d+-abcd1234\.tmp", k)]
    # A live process' temporary (this pytest process) and a name without a pid are not litter: they stay.
    assert f"emu/.emulate.json.{os.getpid()}-live1234.tmp" in after and "emu/.emulate.json.notes.tmp" in after
    assert "removed 1 temporary file(s) left by an interrupted run" in result["stderr"]


def test_batch_of_bad_inputs_is_fast(outcomes):
    """Bad inputs are answered before any real work: the whole batch (≈90 cases) stays cheap."""
    seconds = sorted((r["seconds"], cid) for cid, (_, _, _, _, r) in outcomes.items())
    assert seconds[-1][0] < 60, seconds[-5:]


def test_hostile_synth_out_name_runs_no_command(tmp_path, tiny_sweep, run_cli):
    """`$(...)`, backticks and `;cmd;` in --out are data: synth succeeds, no marker file appears anywhere."""
    name = "fw$(touch M1)`touch M2`;touch M3;"  # the compile runs inside OUT: a marker would land under tmp_path
    out = tmp_path / name
    result = run_cli("synth", "--student", tiny_sweep.run / "student", "--out", out, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (out / "synth_report.json").is_file() and (out / ".jbot-edge-output.json").is_file()
    assert not [p for p in tmp_path.rglob("M[123]")]
    assert not any(Path.cwd().glob("M[123]"))


def test_output_claims_follow_the_owner_marker(tmp_path):
    """A command may replace its own earlier output (marker, or a pre-marker signature file), never another's; an
    unmarked user directory only with --force; resume accepts an unmarked run but not another command's."""
    from jbot_edge.errors import JbotEdgeError
    from jbot_edge.outputs import check_output_dir, mark_output, owner_of

    mark_output(tmp_path / "fw", "synth")
    assert check_output_dir(tmp_path / "fw", "synth") == tmp_path / "fw"
    with pytest.raises(JbotEdgeError, match="holds the output of `jbot-edge synth`"):
        check_output_dir(tmp_path / "fw", "evaluate", force=True)
    legacy = tmp_path / "old-demo"
    legacy.mkdir()
    (legacy / "demo_summary.json").write_text("{}")
    assert owner_of(legacy) == "demo" and check_output_dir(legacy, "demo") == legacy
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    with pytest.raises(JbotEdgeError, match="not written by `jbot-edge report`"):
        check_output_dir(user, "report")
    assert check_output_dir(user, "report", force=True) == user
    assert check_output_dir(user, "qat", resume=True) == user
    with pytest.raises(JbotEdgeError, match="holds the output of `jbot-edge synth`"):
        check_output_dir(tmp_path / "fw", "qat", resume=True)


def test_no_shell_strings_in_the_package():
    """No shell=True, os.system, os.popen or `bash -c`/`sh -c` with a built string anywhere in jbot_edge/."""
    pattern = re.compile(r"shell\s*=\s*True|os\.system\(|os\.popen\(|[\"'](?:ba)?sh[\"']\s*,\s*[\"']-c[\"']|"
                         r"subprocess\.(?:run|call|Popen|check_output|check_call)\(\s*f?[\"']")
    offenders = []
    for path in (REPO_ROOT / "jbot_edge").rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()}")
    assert not offenders, offenders
