"""Design-space sweep: qat → synth (→ emulate) over a grid of students and firmware settings, one teacher.

Every point is the same chain a user would run by hand: :func:`jbot_edge.qat.distill.train_student`, then the
``synth`` and ``emulate`` commands (run in-process, so whatever backend ``synth`` supports, the sweep supports).
The teacher is scored once: :func:`jbot_edge.qat.distill.prepare` fills ``SWEEP_DIR/shared/prepared.npz`` and every
point's student directory gets a hard link to it, which ``prepare`` then reuses (its ``prepared.json`` matches, since
the grid never varies the input spec, seed or split).

When the ``synth`` report knows no latency or resources (no Vivado/Vitis here, hls4ml backend) and
``synth.rtl_estimate`` allows it, the point's student is also built as RTL with the vendor-free backend
(:func:`jbot_edge.firmware.rtl.build_rtl`) and its estimates are folded into ``POINT/rtl_synth_report.json`` (same
schema as ``synth_report.json``, every figure labelled ``estimate:da4ml`` / ``estimate:yosys``).

Output layout (``SWEEP_DIR``)::

    config.yaml                     resolved SweepConfig
    shared/prepared.{npz,json}      teacher scores + codes + split, computed once (see jbot_edge.qat.distill)
    points/<ID>/point.json          {"id", "parameters", "stages": {STAGE: {"key", "seconds"}}}: a stage counts as
                                    done only when its key (hash of everything it depends on) matches
    points/<ID>/student/            `jbot-edge qat` output
    points/<ID>/firmware/           `jbot-edge synth` output (+ emulate.json)
    points/<ID>/rtl/, rtl_synth_report.json     the RTL estimate (only when needed, see above)
    sweep.csv                       one row per point (rewritten atomically after every point), columns below
    sweep_summary.json              schema "jbot-edge.sweep_summary/1": run, data, trigger, grid size, per-point
                                    status and time, Pareto fronts, figures' sources

``sweep.csv`` columns (empty cell = unknown)::

    point_id, status ("ok" | "failed: <message>"), key (resume key of the whole row)
    student, kind, widths, weight_bits, act_bits, reuse_factor, clock_ns, board, backend      the parameters
    parameters, bops                                      student size (qat_report.json)
    auc_student_<S>, auc_teacher_<S>                      AUC per signal S on the held-out test split
    eff_student_<S>, eff_teacher_<S>                      signal efficiency at trigger_rate_khz (trigger_view
                                                          semantics: threshold from the test background)
    trigger_rate_khz, per_jet_fpr, trigger_resolved       the working point the efficiencies refer to
    spearman                                              rank correlation student vs teacher, all test jets
    latency_ns, latency_cycles, latency_source, ii, ii_source
    LUT, LUT_pct, FF, FF_pct, DSP, DSP_pct, BRAM, BRAM_pct, resource_source     (% of the board)
    budget_verdict, verdict_basis, figures_design, figures_file
                        fits | exceeds | unknown; vendor | estimate | unknown; the design the latency describes
                        (e.g. "da4ml RTL, fully parallel ..."); which report they came from. A point with reuse
                        factor > 1 or the Resource strategy never takes the fully parallel RTL's figures: its II
                        comes from hls4ml's schedule (>= reuse factor), latency/resources are empty unless a
                        vendor tool ran
    bit_exact (true | false | empty when not emulated), emulate_n, seconds
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from jbot_edge.atomic import atomic_path, write_json
from jbot_edge.config import StrictModel, deep_merge, load_yaml, packaged_config
from jbot_edge.errors import JbotEdgeError
from jbot_edge.logs import get_logger
from jbot_edge.models.students import StudentConfig

log = get_logger(__name__)

SUMMARY_SCHEMA = "jbot-edge.sweep_summary/1"
CSV_NAME = "sweep.csv"
SUMMARY_NAME = "sweep_summary.json"
RTL_REPORT_NAME = "rtl_synth_report.json"
RESOURCE_COLUMNS = ("LUT", "FF", "DSP", "BRAM")


# -- configuration ------------------------------------------------------------------------------------------------
class StudentVariant(StudentConfig):
    """One architecture of the grid: a name plus the StudentConfig keys it sets (others: the qat defaults)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$", description="short name used in point ids")


class SweepGrid(StrictModel):
    weight_bits: list[int] = Field(default_factory=lambda: [4, 6, 8], min_length=1)
    act_bits: list[int] | None = Field(default=None, description="null: activation bits = weight bits (tied)")
    reuse_factor: list[int] = Field(default_factory=lambda: [1], min_length=1)
    clock_ns: list[float | None] = Field(default_factory=lambda: [None], min_length=1,
                                         description="clock periods; null = the board's default clock")

    @field_validator("weight_bits", "act_bits")
    @classmethod
    def _bits_in_range(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and any(not 2 <= b <= 16 for b in value):
            raise ValueError(f"bit widths must lie in 2..16, got {value}")
        return value

    @field_validator("reuse_factor")
    @classmethod
    def _positive_reuse(cls, value: list[int]) -> list[int]:
        if any(r < 1 for r in value):
            raise ValueError(f"reuse factors must be >= 1, got {value}")
        return value

    @field_validator("clock_ns")
    @classmethod
    def _positive_clock(cls, value: list[float | None]) -> list[float | None]:
        if any(c is not None and not c > 0 for c in value):
            raise ValueError(f"clock periods must be > 0 ns, got {value}")
        return value


class SweepSynth(StrictModel):
    board: str = "vu13p"
    backend: str = Field(default="hls4ml", description="`jbot-edge synth --backend`")
    strategy: Literal["latency", "resource"] = "latency"
    extra_args: list[str] = Field(default_factory=list, description="more `jbot-edge synth` arguments/overrides")
    rtl_estimate: Literal["auto", "always", "never"] = Field(
        default="auto", description="build the da4ml RTL for vendor-free figures when the synth report has none "
        "(auto: only if da4ml is installed)")
    yosys: bool = Field(default=False, description="also size the RTL with yosys and measure its stage timing on the "
                        "netlist (minutes per point)")


class SweepEmulate(StrictModel):
    n_jets: int = Field(default=1000, ge=0, description="jets for the bit-exactness check (0: skip emulation)")


class SweepTrigger(StrictModel):
    rate_khz: float = Field(default=3.0, gt=0, description="trigger rate the efficiencies are quoted at")
    background_rate_mhz: float = Field(default=28.61, gt=0)
    jets_per_crossing: int = Field(default=1, ge=1)


class SweepConfig(StrictModel):
    qat: dict[str, Any] = Field(default_factory=dict, description="QatConfig keys for every point, on top of "
                                "configs/qat/default.yaml (e.g. optim: {epochs: 10})")
    students: list[StudentVariant] = Field(min_length=1)
    grid: SweepGrid = Field(default_factory=SweepGrid)
    synth: SweepSynth = Field(default_factory=SweepSynth)
    emulate: SweepEmulate = Field(default_factory=SweepEmulate)
    trigger: SweepTrigger = Field(default_factory=SweepTrigger)

    @model_validator(mode="after")
    def _unique_names(self) -> SweepConfig:
        names = [s.name for s in self.students]
        if len(set(names)) != len(names):
            raise ValueError(f"student names must be unique, got {names}")
        return self


# -- points -------------------------------------------------------------------------------------------------------
class Point(StrictModel):
    """One design of the grid, fully resolved."""

    id: str
    student: str
    qat: dict[str, Any]  # QatConfig as JSON
    reuse_factor: int
    clock_ns: float

    @property
    def kind(self) -> str:
        return self.qat["student"]["kind"]

    def widths(self) -> str:
        s = self.qat["student"]
        if s["kind"] == "deepsets":
            return f"phi{s['phi_widths']}-rho{s['rho_widths']}".replace(" ", "")
        return f"{s['mlp_widths']}".replace(" ", "")


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def qat_config(cfg: SweepConfig, variant: StudentVariant | None = None, weight_bits: int | None = None,
               act_bits: int | None = None):
    """The QatConfig of a point (or, without a variant, the base every point shares)."""
    import pydantic

    from jbot_edge.config import format_validation_error
    from jbot_edge.qat.distill import QatConfig

    data = deep_merge(load_yaml(packaged_config("qat/default.yaml")), cfg.qat)
    if variant is not None:
        student = variant.model_dump(mode="json", exclude_unset=True, exclude={"name"})
        student.update(weight_bits=weight_bits, act_bits=act_bits)
        data = deep_merge(data, {"student": student})
    try:
        return QatConfig.model_validate(data)
    except pydantic.ValidationError as exc:
        where = f"sweep student {variant.name!r}" if variant else "sweep key 'qat'"
        raise JbotEdgeError(format_validation_error(exc, where)) from exc


def expand_grid(cfg: SweepConfig, board_clock_ns: float) -> list[Point]:
    """Every point of the grid, in a stable order (students outermost)."""
    points = []
    acts = cfg.grid.act_bits
    for variant, w, a, rf, clock in itertools.product(cfg.students, cfg.grid.weight_bits, acts or [None],
                                                       cfg.grid.reuse_factor, cfg.grid.clock_ns):
        a = w if a is None else a
        clock = float(board_clock_ns if clock is None else clock)
        qcfg = qat_config(cfg, variant, w, a)
        point_id = f"{variant.name}-w{w}a{a}-rf{rf}-{clock:g}ns"
        points.append(Point(id=point_id, student=variant.name, qat=qcfg.model_dump(mode="json"), reuse_factor=rf,
                            clock_ns=clock))
    ids = [p.id for p in points]
    if len(set(ids)) != len(ids):
        raise JbotEdgeError("sweep grid lists the same point twice (repeated bits, reuse factor or clock)")
    return points


# -- small file helpers -------------------------------------------------------------------------------------------
def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _file_stamp(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def read_table(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """Rows of a sweep.csv (strings, as written)."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def write_table(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    """Write rows atomically; the header is the union of the rows' keys in order of first appearance."""
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, restval="", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in row.items()})
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue())
    return path


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def pareto_front(x: Sequence[float], y: Sequence[float]) -> np.ndarray:
    """Boolean mask of the points no other point beats: lower-or-equal x AND higher-or-equal y, one strictly.
    Points with an unknown (NaN) coordinate are never on the front."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    known = np.isfinite(x) & np.isfinite(y)
    front = np.zeros(len(x), dtype=bool)
    for i in np.flatnonzero(known):
        others = known.copy()
        others[i] = False
        dominated = others & (x <= x[i]) & (y >= y[i]) & ((x < x[i]) | (y > y[i]))
        front[i] = not dominated.any()
    return front


# -- stages -------------------------------------------------------------------------------------------------------
class PointRecord:
    """``point.json``: which stages finished, under which key. Written atomically after every change."""

    def __init__(self, directory: Path, point: Point):
        self.path = directory / "point.json"
        old = _read_json(self.path) or {}
        self.data = {"id": point.id, "parameters": point.model_dump(mode="json"), "stages": old.get("stages", {})}

    def done(self, stage: str, key: str) -> bool:
        return self.data["stages"].get(stage, {}).get("key") == key

    def start(self, stage: str) -> None:
        self.data["stages"].pop(stage, None)
        write_json(self.path, self.data)

    def finish(self, stage: str, key: str, seconds: float, **info: Any) -> None:
        self.data["stages"][stage] = {"key": key, "seconds": round(seconds, 1), **info}
        write_json(self.path, self.data)


def _run_cli(argv: list[str]) -> int:
    """Run a jbot-edge command in this process (as `jbot-edge demo` does); returns its exit status."""
    import contextlib

    from jbot_edge.cli import app

    # The commands print their output path on stdout; the sweep's own stdout stays one line (the table's path).
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured):
            app(args=argv, prog_name="jbot-edge", standalone_mode=False)
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        log.debug("jbot-edge %s printed: %s", argv[0], captured.getvalue().strip())
    return 0


def _link_or_copy(src: Path, dst: Path) -> None:
    if dst.exists():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


class Sweep:
    """Runs the points of one SweepConfig against one teacher run and data file."""

    def __init__(self, cfg: SweepConfig, run_dir: Path, data_path: Path, out_dir: Path):
        from jbot_edge.firmware.boards import load_board

        self.cfg, self.run_dir, self.data_path, self.out_dir = cfg, Path(run_dir), Path(data_path), Path(out_dir)
        for required in ("teacher.pt", "score_head.json", "score_head.npz"):
            if not (self.run_dir / required).is_file():
                raise JbotEdgeError(f"--run {self.run_dir}: no {required} (need a pre-trained teacher with a score "
                                    "head from `jbot-edge evaluate`)")
        if not self.data_path.is_file():
            raise JbotEdgeError(f"--data {self.data_path} does not exist")
        self.board = load_board(cfg.synth.board)
        self.points = expand_grid(cfg, self.board.clock_ns)
        self.base_qat = qat_config(cfg)
        self.inputs_key = _key(_file_stamp(self.run_dir / "teacher.pt"), _file_stamp(self.run_dir / "score_head.npz"),
                               _file_stamp(self.data_path))
        self._prepared: dict[str, np.ndarray] | None = None

    # shared teacher scores ------------------------------------------------------------------------------------
    def prepared(self) -> dict[str, np.ndarray]:
        """Teacher scores, codes, labels and split of every jet: computed once into SWEEP_DIR/shared."""
        if self._prepared is None:
            from jbot_edge.qat.distill import prepare

            self._prepared = prepare(self.base_qat, self.run_dir, self.data_path, self.out_dir / "shared")
        return self._prepared

    # one point ------------------------------------------------------------------------------------------------
    def point_dir(self, point: Point) -> Path:
        return self.out_dir / "points" / point.id

    def row_key(self, point: Point) -> str:
        return _key(self.inputs_key, point.model_dump(mode="json"), self.cfg.synth.model_dump(mode="json"),
                    self.cfg.emulate.model_dump(mode="json"), self.cfg.trigger.model_dump(mode="json"))

    def run_point(self, point: Point) -> dict[str, Any]:
        from jbot_edge.qat.distill import QatConfig, train_student

        directory = self.point_dir(point)
        directory.mkdir(parents=True, exist_ok=True)
        record = PointRecord(directory, point)
        student_dir, fw_dir = directory / "student", directory / "firmware"
        t0 = time.perf_counter()

        qat_key = _key(self.inputs_key, point.qat)
        if not (record.done("qat", qat_key) and (student_dir / "qat_report.json").is_file()):
            record.start("qat")
            for name in ("prepared.npz", "prepared.json"):
                _link_or_copy(self.out_dir / "shared" / name, student_dir / name)
            resume = (student_dir / "checkpoints" / "last.pt").is_file() and not (student_dir / "student.pt").is_file()
            log.info("[%s] qat (%s)", point.id, "resuming" if resume else "training")
            start = time.perf_counter()
            try:
                train_student(QatConfig.model_validate(point.qat), self.run_dir, self.data_path, student_dir,
                              resume=resume)
            except JbotEdgeError:
                if not resume:
                    raise
                # A checkpoint from a different configuration: train from scratch instead.
                shutil.rmtree(student_dir / "checkpoints", ignore_errors=True)
                train_student(QatConfig.model_validate(point.qat), self.run_dir, self.data_path, student_dir)
            record.finish("qat", qat_key, time.perf_counter() - start)

        synth = self.cfg.synth
        synth_key = _key(qat_key, synth.board, synth.backend, synth.strategy, synth.extra_args, point.reuse_factor,
                         point.clock_ns)
        if not (record.done("synth", synth_key) and (fw_dir / "synth_report.json").is_file()):
            record.start("synth")
            record.start("emulate")
            log.info("[%s] synth (%s, reuse factor %d, %g ns)", point.id, synth.backend, point.reuse_factor,
                     point.clock_ns)
            start = time.perf_counter()
            status = _run_cli(["synth", "--student", str(student_dir), "--board", synth.board, "--backend",
                               synth.backend, "--strategy", synth.strategy, "--reuse-factor", str(point.reuse_factor),
                               "--clock-ns", repr(point.clock_ns), "--out", str(fw_dir), *synth.extra_args])
            if status != 0 or not (fw_dir / "synth_report.json").is_file():
                raise JbotEdgeError(f"synth of point {point.id} exited with status {status}")
            record.finish("synth", synth_key, time.perf_counter() - start)

        figures_file = fw_dir / "synth_report.json"
        if self._needs_rtl_estimate(_read_json(figures_file), point):
            rtl_key = _key(synth_key, synth.yosys)
            if not (record.done("rtl_estimate", rtl_key) and (directory / RTL_REPORT_NAME).is_file()):
                record.start("rtl_estimate")
                start = time.perf_counter()
                self._rtl_estimate(point, directory, _read_json(figures_file))
                record.finish("rtl_estimate", rtl_key, time.perf_counter() - start)
            figures_file = directory / RTL_REPORT_NAME

        emulate_n = self.cfg.emulate.n_jets
        if emulate_n > 0:
            emulate_key = _key(synth_key, emulate_n)
            if not (record.done("emulate", emulate_key) and (fw_dir / "emulate.json").is_file()):
                record.start("emulate")
                log.info("[%s] emulate (%d jets + fuzz set)", point.id, emulate_n)
                start = time.perf_counter()
                status = _run_cli(["emulate", "--firmware", str(fw_dir), "--data", str(self.data_path), "--n",
                                   str(emulate_n)])
                if status not in (0, 1) or not (fw_dir / "emulate.json").is_file():  # 1 = not bit exact: a result
                    raise JbotEdgeError(f"emulate of point {point.id} exited with status {status}")
                record.finish("emulate", emulate_key, time.perf_counter() - start)

        row = self.row(point, figures_file, fw_dir / "emulate.json" if emulate_n > 0 else None)
        row["seconds"] = round(sum(s.get("seconds", 0) for s in record.data["stages"].values()), 1)
        log.info("[%s] done in %.0f s", point.id, time.perf_counter() - t0)
        return row

    def _needs_rtl_estimate(self, report: dict[str, Any], point: Point) -> bool:
        mode = self.cfg.synth.rtl_estimate
        unknown = report["latency_ns"]["value"] is None or report["resources"]["LUT"]["value"] is None
        # The da4ml RTL is fully parallel: it stands in only for a Latency-strategy, reuse-factor-1 design. For any
        # other the figures stay what the synth report says (II from hls4ml's schedule, the rest unknown).
        fully_parallel = self.cfg.synth.strategy == "latency" and point.reuse_factor == 1
        if mode == "never" or not unknown or not fully_parallel:
            return False
        if mode == "auto":
            from jbot_edge.firmware.rtl.tools import da4ml_version

            if da4ml_version() is None:
                log.warning("synth report has no latency/resources and da4ml is not installed: figures unknown")
                return False
        return True

    def _rtl_estimate(self, point: Point, directory: Path, synth_report: dict[str, Any]) -> None:
        from jbot_edge.firmware.reports import build_synth_report, write_synth_report
        from jbot_edge.firmware.rtl import build_rtl, rtl_estimates

        log.info("[%s] vendor-free estimate: da4ml RTL%s", point.id, " + yosys" if self.cfg.synth.yosys else "")
        build_rtl(directory / "student", directory / "rtl", board=self.cfg.synth.board, clock_ns=point.clock_ns)
        estimates = rtl_estimates(directory / "rtl", yosys=self.cfg.synth.yosys, timing=self.cfg.synth.yosys)
        report = build_synth_report(
            self.board, point.clock_ns, "rtl", "Latency", 1, synth_report["layer_precisions"], estimates=estimates,
            vendor_tools=synth_report.get("vendor_tools") or {},
            notes=["made by `jbot-edge sweep` from the da4ml RTL of this point's student (rtl/): fully parallel, "
                   "standing in for the hls4ml Latency-strategy, reuse-factor-1 project"])
        write_synth_report(directory / RTL_REPORT_NAME, report)

    # one row --------------------------------------------------------------------------------------------------
    def row(self, point: Point, figures_file: Path, emulate_file: Path | None) -> dict[str, Any]:
        qat = json.loads((self.point_dir(point) / "student" / "qat_report.json").read_text())
        figures = json.loads(figures_file.read_text())
        student = point.qat["student"]
        row: dict[str, Any] = {
            "point_id": point.id, "status": "ok", "key": self.row_key(point),
            "student": point.student, "kind": point.kind, "widths": point.widths(),
            "weight_bits": student["weight_bits"], "act_bits": student["act_bits"],
            "reuse_factor": point.reuse_factor, "clock_ns": point.clock_ns, "board": self.board.name,
            "backend": self.cfg.synth.backend,
            "parameters": qat["student"]["parameters"], "bops": qat["student"]["bops"],
        }
        for signal in qat["auc_student"]:
            row[f"auc_student_{signal}"] = qat["auc_student"][signal]
            row[f"auc_teacher_{signal}"] = qat["auc_teacher"][signal]
        row.update(self.trigger_efficiencies(point))
        row["spearman"] = qat["spearman"]["all"]
        row.update(figure_columns(figures))
        row["figures_file"] = str(figures_file.relative_to(self.out_dir))
        if emulate_file is not None:
            emulate = json.loads(emulate_file.read_text())
            row["bit_exact"], row["emulate_n"] = bool(emulate["exact"]), emulate["n"]
        else:
            row["bit_exact"], row["emulate_n"] = None, 0
        return row

    def trigger_efficiencies(self, point: Point) -> dict[str, Any]:
        """Student and teacher signal efficiency at the configured rate, on the qat report's test split."""
        import torch

        from jbot_edge.evaluate.metrics import trigger_view
        from jbot_edge.models.students import load_student, output_lsb, score_codes
        from jbot_edge.qat.distill import SPLIT_TEST, background_mask

        prepared = self.prepared()
        model, _, spec, _ = load_student(self.point_dir(point) / "student")
        test = prepared["split"] == SPLIT_TEST
        x = torch.from_numpy(spec.to_model_input(prepared["codes"][test]))
        scores = {"student": score_codes(model, x).astype(np.float64) * output_lsb(model),
                  "teacher": prepared["scores"][test]}
        labels = prepared["labels"][test]
        bkg = background_mask(prepared)[test]
        names = [str(n) for n in prepared["label_names"]]
        train_labels = {str(n) for n in prepared["train_labels"]}
        trig = self.cfg.trigger
        out: dict[str, Any] = {}
        for who, s in scores.items():
            signals = {n: s[labels == i] for i, n in enumerate(names) if n not in train_labels and (labels == i).any()}
            view = trigger_view(s[bkg], signals, [trig.rate_khz], trig.background_rate_mhz, trig.jets_per_crossing)[0]
            for name, eff in view["signal_efficiency"].items():
                out[f"eff_{who}_{name}"] = eff
            out.update(trigger_rate_khz=trig.rate_khz, per_jet_fpr=view["per_jet_fpr"],
                       trigger_resolved=view["resolved"])
        return out

    # the whole sweep ------------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        from jbot_edge.config import save_config
        from jbot_edge.logs import progress_bar

        self.out_dir.mkdir(parents=True, exist_ok=True)
        save_config(self.cfg, self.out_dir / "config.yaml")
        csv_path = self.out_dir / CSV_NAME
        by_id = {r["point_id"]: r for r in read_table(csv_path)}
        statuses: list[dict[str, Any]] = []
        started = time.perf_counter()
        with progress_bar() as bar:
            task = bar.add_task("sweep", total=len(self.points))
            for point in self.points:
                old = by_id.get(point.id)
                if old is not None and old.get("status") == "ok" and old.get("key") == self.row_key(point):
                    log.info("[%s] finished already (row in %s): skipped", point.id, CSV_NAME)
                    statuses.append({"id": point.id, "status": "skipped (finished)"})
                    bar.advance(task)
                    continue
                self.prepared()  # the teacher pass, once, before the first point that needs it
                try:
                    row = self.run_point(point)
                    statuses.append({"id": point.id, "status": "ran", "seconds": row["seconds"]})
                except JbotEdgeError as exc:  # a design that cannot be built is a result; bugs still stop the sweep
                    log.error("[%s] failed: %s", point.id, exc)
                    row = {"point_id": point.id, "status": f"failed: {exc}", "key": self.row_key(point)}
                    statuses.append({"id": point.id, "status": "failed", "error": str(exc)})
                by_id[point.id] = row
                rows = [by_id[p.id] for p in self.points if p.id in by_id]
                rows += [r for i, r in by_id.items() if i not in {p.id for p in self.points}]  # other configs' rows
                write_table(csv_path, rows)
                bar.advance(task)
        rows = [by_id[p.id] for p in self.points]
        summary = self.summary(rows, statuses, time.perf_counter() - started)
        write_json(self.out_dir / SUMMARY_NAME, summary)
        return summary

    def summary(self, rows: list[dict[str, Any]], statuses: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
        ok = [r for r in rows if r.get("status") == "ok"]
        signals = sorted({k[len("auc_student_"):] for r in ok for k in r if k.startswith("auc_student_")})
        fronts: dict[str, list[str]] = {}
        for signal in signals:
            for x in ("LUT", "latency_ns"):
                for metric in ("auc_student", "eff_student"):
                    xs = [_float(r.get(x)) for r in ok]
                    ys = [_float(r.get(f"{metric}_{signal}")) for r in ok]
                    mask = pareto_front(xs, ys)
                    fronts[f"{metric}_{signal} vs {x}"] = [r["point_id"] for r, m in zip(ok, mask) if m]
        sources = sorted({str(r.get(k)) for r in ok for k in ("latency_source", "resource_source") if r.get(k)})
        return {
            "schema": SUMMARY_SCHEMA,
            "run": str(self.run_dir), "data": str(self.data_path), "board": self.board.name,
            "table": CSV_NAME, "n_points": len(self.points), "n_ok": len(ok),
            "n_failed": sum(1 for r in rows if str(r.get("status", "")).startswith("failed")),
            "trigger": self.cfg.trigger.model_dump(mode="json"),
            "signals": signals,
            "figure_sources": sources,
            "bit_exact": {r["point_id"]: _bool(r.get("bit_exact")) for r in ok},
            "pareto": fronts,
            "points": statuses,
            "seconds": round(seconds, 1),
        }


def figure_columns(report: dict[str, Any]) -> dict[str, Any]:
    """Latency, II, resources (value + % of board) and verdict of a synth_report.json, as flat columns."""
    out: dict[str, Any] = {
        "latency_ns": report["latency_ns"]["value"], "latency_cycles": report["latency_cycles"]["value"],
        "latency_source": report["latency_cycles"]["source"],
        "ii": report["ii"]["value"], "ii_source": report["ii"]["source"],
    }
    for kind in RESOURCE_COLUMNS:
        figure = report["resources"][kind]
        out[kind], out[f"{kind}_pct"] = figure["value"], figure["percent_of_board"]
    out["resource_source"] = report["resources"]["LUT"]["source"]
    out["budget_verdict"] = report["budget"]["verdict"]
    out["verdict_basis"] = report["budget"].get("verdict_basis", "")
    out["figures_design"] = report["latency_cycles"].get("design", "")
    return out


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _bool(value: Any) -> bool | None:
    if isinstance(value, bool) or value is None:
        return value
    return {"true": True, "false": False}.get(str(value).lower())
