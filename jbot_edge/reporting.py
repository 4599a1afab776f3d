"""Helpers behind the report notebooks (``notebooks/*.ipynb``): load artifacts, tabulate, plot.

The notebooks stay short and free of hidden state: every cell calls one helper here. Every figure has axis labels
with units, a legend and, where a limit exists, the budget line; :class:`Figures` shows it inline and, when the report
command gives a directory, writes it as ``NAME.png`` (listed in ``report.json``).

Inputs are the artifact folders of ``jbot-edge demo`` (``RUN_DIR``: ``jets.h5``, ``teacher/``, ``evaluate/``,
``student/``, ``firmware/``) and of ``jbot-edge sweep`` (``SWEEP_DIR/sweep.csv``). A missing artifact is reported
as such (``None`` + a message) so a notebook can say "no sweep table given"; a present but broken one raises.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jbot_edge.errors import JbotEdgeError
from jbot_edge.sweep import RESOURCE_COLUMNS, figure_columns, pareto_front

KIND_COLORS = {"deepsets": "tab:blue", "mlp": "tab:orange"}
SCORE_COLORS = {"teacher": "k", "student": "tab:blue", "firmware": "tab:red"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # figures are rendered to PNG bytes, never to a window
    import matplotlib.pyplot as plt

    return plt


# -- parameters -----------------------------------------------------------------------------------------------------
def env_path(variable: str, default: str | os.PathLike[str] | None) -> Path | None:
    """A notebook parameter: the environment variable if set (empty = none), else ``default``."""
    value = os.environ.get(variable)
    if value is None:
        return Path(default) if default else None
    return Path(value) if value.strip() else None


# -- figures --------------------------------------------------------------------------------------------------------
class Figures:
    """Shows figures inline as PNG and, with a directory, writes each one as ``NAME.png``."""

    def __init__(self, directory: str | os.PathLike[str] | None):
        self.directory = Path(directory) if directory else None
        if self.directory:
            self.directory.mkdir(parents=True, exist_ok=True)
        self.written: list[str] = []

    def _emit(self, png: bytes, name: str) -> None:
        from IPython.display import Image, display

        if self.directory:
            (self.directory / f"{name}.png").write_bytes(png)
            self.written.append(f"{name}.png")
        display(Image(data=png))

    def show(self, fig, name: str) -> None:
        buffer = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buffer, format="png", dpi=110)
        _pyplot().close(fig)
        self._emit(buffer.getvalue(), name)

    def show_written(self, write: Callable[[Path], Any], name: str) -> None:
        """For plot functions that write a PNG to a path (jbot_edge.evaluate.plots)."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{name}.png"
            write(path)
            self._emit(path.read_bytes(), name)


def say(message: str) -> None:
    """A visible note in the notebook output (e.g. an absent input)."""
    from IPython.display import Markdown, display

    display(Markdown(f"> **{message}**"))


# -- artifacts --------------------------------------------------------------------------------------------------------
def _json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise JbotEdgeError(f"{path} is not valid JSON: {exc}") from exc


@dataclass
class RunArtifacts:
    """What a demo-like run directory holds; absent pieces are None and listed in ``missing``."""

    run_dir: Path
    teacher_dir: Path | None = None
    jets: Path | None = None
    evaluate: dict[str, Any] | None = None
    qat_report: dict[str, Any] | None = None
    student_dir: Path | None = None
    firmware_dir: Path | None = None
    synth_report: dict[str, Any] | None = None
    emulate: dict[str, Any] | None = None
    missing: list[str] = field(default_factory=list)


def load_run(run_dir: str | os.PathLike[str] | None) -> RunArtifacts:
    """Read the JSON summaries of a run directory (``jbot-edge demo`` layout)."""
    if run_dir is None:
        raise JbotEdgeError("no run directory given (set JBOT_EDGE_RUN)")
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise JbotEdgeError(f"run directory {run_dir} does not exist")
    art = RunArtifacts(run_dir)

    def found(path: Path, what: str) -> Path | None:
        if path.exists():
            return path
        art.missing.append(f"no {what} ({path})")
        return None

    art.teacher_dir = found(run_dir / "teacher" / "teacher.pt", "teacher") and run_dir / "teacher"
    art.jets = found(run_dir / "jets.h5", "jet file")
    art.evaluate = _json(run_dir / "evaluate" / "evaluate.json")
    if art.evaluate is None:
        art.missing.append(f"no evaluation ({run_dir / 'evaluate' / 'evaluate.json'})")
    art.student_dir = found(run_dir / "student" / "qat_report.json", "student") and run_dir / "student"
    art.qat_report = _json(run_dir / "student" / "qat_report.json")
    art.firmware_dir = found(run_dir / "firmware" / "synth_report.json", "firmware") and run_dir / "firmware"
    art.synth_report = _json(run_dir / "firmware" / "synth_report.json")
    art.emulate = _json(run_dir / "firmware" / "emulate.json")
    return art


def load_sweep(sweep_dir: str | os.PathLike[str] | None):
    """``SWEEP_DIR/sweep.csv`` as a DataFrame of the finished points, or None when no sweep was given / run."""
    import pandas as pd

    if sweep_dir is None:
        return None
    path = Path(sweep_dir) / "sweep.csv"
    if not path.is_file():
        return None
    table = pd.read_csv(path)
    if "status" in table:
        table = table[table["status"] == "ok"].reset_index(drop=True)
    return table


# -- designs: latency and resources -----------------------------------------------------------------------------------
def designs_table(run: RunArtifacts | None, sweep=None):
    """One row per design: the run's firmware (named "run") and every sweep point, with latency/II/resources and
    the board's budget (columns of :func:`jbot_edge.sweep.figure_columns`)."""
    import pandas as pd

    from jbot_edge.firmware.boards import load_board

    rows = []
    if run is not None and run.synth_report is not None:
        report = run.synth_report
        rows.append({"design": "run", "kind": (run.qat_report or {}).get("student", {}).get("kind", "?"),
                     "board": report["board"], **figure_columns(report)})
    if sweep is not None:
        for _, r in sweep.iterrows():
            rows.append({"design": r["point_id"], "kind": r["kind"], "board": r["board"],
                         **{c: r.get(c) for c in figure_columns_names()}})
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    budgets = {name: load_board(name) for name in table["board"].unique()}
    table["latency_budget_ns"] = [budgets[b].budget.latency_ns_max for b in table["board"]]
    table["LUT_cap_pct"] = [100 * budgets[b].budget.resource_fraction_max.get("LUT", np.nan) for b in table["board"]]
    return table


def figure_columns_names() -> list[str]:
    return ["latency_ns", "latency_cycles", "latency_source", "ii", "ii_source",
            *[c for k in RESOURCE_COLUMNS for c in (k, f"{k}_pct")], "resource_source", "budget_verdict"]


def plot_latency(designs):
    """Horizontal bars: latency per design, the budget as a vertical line; unknown latencies are labelled."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(designs) + 1.8))
    y = np.arange(len(designs))
    latency = designs["latency_ns"].astype(float).to_numpy()
    colors = [KIND_COLORS.get(k, "tab:gray") for k in designs["kind"]]
    ax.barh(y, np.nan_to_num(latency), color=colors)
    for i, (lat, cycles, source) in enumerate(zip(latency, designs["latency_cycles"], designs["latency_source"])):
        text = "unknown" if not np.isfinite(lat) else f"{lat:.1f} ns = {int(cycles)} cycles ({source})"
        ax.text(np.nan_to_num(lat), i, " " + text, va="center", fontsize=8)
    for budget in sorted(set(designs["latency_budget_ns"])):
        ax.axvline(budget, color="tab:red", ls="--", label=f"level-1 budget {budget:g} ns")
    from matplotlib.patches import Patch

    handles = [Patch(color=color, label=f"{kind} student") for kind, color in KIND_COLORS.items()
               if kind in set(designs["kind"])]
    ax.legend(handles=ax.get_legend_handles_labels()[0] + handles, fontsize=8, loc="lower right")
    ax.set_yticks(y, designs["design"], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("latency [ns] (pipeline cycles × clock period)")
    ax.set_xlim(0, max(np.nanmax(np.r_[latency, 0]), designs["latency_budget_ns"].max()) * 1.6)
    ax.set_title("latency per design vs the level-1 budget")
    ax.grid(axis="x", alpha=0.3)
    return fig


def plot_resources(designs):
    """Grouped bars: LUT/FF/DSP/BRAM as % of the board per design, with the LUT cap."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(designs) + 3), 4.2))
    x = np.arange(len(designs))
    width = 0.8 / len(RESOURCE_COLUMNS)
    for j, kind in enumerate(RESOURCE_COLUMNS):
        values = designs[f"{kind}_pct"].astype(float).to_numpy()
        ax.bar(x + (j - 1.5) * width, np.nan_to_num(values), width, label=f"{kind}" + (
            " (unknown)" if np.isnan(values).all() else ""))
    for cap in sorted(set(designs["LUT_cap_pct"].dropna())):
        ax.axhline(cap, color="tab:red", ls="--", label=f"LUT cap {cap:g} % of board")
    ax.set_xticks(x, designs["design"], rotation=35, ha="right", fontsize=8)
    boards = ", ".join(sorted(set(designs["board"])))
    sources = ", ".join(sorted(set(designs["resource_source"].dropna().astype(str))))
    ax.set_ylabel(f"% of {boards} resources")
    ax.set_title(f"resources per design (source: {sources or 'unknown'})", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return fig


def plot_pareto(sweep, x: str, y: str, y_label: str, teacher: str | None = None):
    """Physics (``y``, higher is better) vs cost (``x``: "LUT" or "latency_ns"), the Pareto front as a step line,
    the teacher's value and the board's budget as reference lines."""
    from jbot_edge.firmware.boards import load_board

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.6))
    xs, ys = sweep[x].astype(float).to_numpy(), sweep[y].astype(float).to_numpy()
    front = pareto_front(xs, ys)
    for kind in sorted(set(sweep["kind"])):
        sel = (sweep["kind"] == kind).to_numpy()
        ax.scatter(xs[sel], ys[sel], color=KIND_COLORS.get(kind, "tab:gray"), s=40, label=f"{kind} student",
                   zorder=3)
    for xi, yi, w, a in zip(xs, ys, sweep["weight_bits"], sweep["act_bits"]):
        if np.isfinite(xi) and np.isfinite(yi):
            ax.annotate(f"w{w}a{a}", (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=7)
    if front.any():
        ax.scatter(xs[front], ys[front], s=110, facecolors="none", edgecolors="k", label="on the Pareto front",
                   zorder=4)
        order = np.argsort(xs[front])
        ax.step(xs[front][order], ys[front][order], where="post", color="k", lw=1, zorder=2)
    if teacher is not None and teacher in sweep and sweep[teacher].notna().any():
        ax.axhline(float(sweep[teacher].iloc[0]), color="gray", ls=":", label="teacher (full precision)")
    board = load_board(str(sweep["board"].iloc[0]))
    if x == "LUT" and "LUT" in board.budget.resource_fraction_max:
        cap = board.budget.resource_fraction_max["LUT"] * board.resources.LUT
        ax.axvline(cap, color="tab:red", ls="--", label=f"LUT cap ({100 * board.budget.resource_fraction_max['LUT']:g} % "
                   f"of {board.name} = {cap:,.0f})")
        source = ", ".join(sorted(set(sweep["resource_source"].dropna().astype(str))))
        ax.set_xlabel(f"LUTs [CLB LUTs] ({source})")
    elif x == "latency_ns":
        ax.axvline(board.budget.latency_ns_max, color="tab:red", ls="--",
                   label=f"latency budget {board.budget.latency_ns_max:g} ns")
        source = ", ".join(sorted(set(sweep["latency_source"].dropna().astype(str))))
        ax.set_xlabel(f"latency [ns] ({source})")
    else:
        ax.set_xlabel(x)
    if not np.isfinite(xs).any():
        ax.text(0.5, 0.5, f"{x} unknown for every design", transform=ax.transAxes, ha="center")
    ax.set_ylabel(y_label)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def layer_table(firmware_dir: str | os.PathLike[str]):
    """Per layer of one design: hls4ml's precisions, and for the dense layers their size and multiplications.

    Layer resources are not listed: only a vendor C-synthesis report breaks them down per layer; the design's
    totals are in its synth_report.json."""
    import pandas as pd

    from jbot_edge.models.students import _layer_plan, load_student

    firmware_dir = Path(firmware_dir)
    meta = _json(firmware_dir / "firmware.json")
    if meta is None:
        raise JbotEdgeError(f"{firmware_dir} has no firmware.json (not a `jbot-edge synth` directory)")
    _, cfg, spec, _ = load_student(firmware_dir / "student.pt")
    plan = iter(_layer_plan(cfg, spec))  # the dense layers, in graph order (hls4ml keeps the QONNX order)
    rows = []
    for name, types in meta["layer_precisions"].items():
        row = {"layer": name, **{k: v for k, v in types.items() if k in ("result_t", "weight_t", "bias_t", "accum_t")}}
        if "weight_t" in types:
            dense = next(plan)
            row.update(weights=dense["n_in"] * dense["n_out"], applied_per_jet=dense["repeat"],
                       multiplications_per_jet=dense["n_in"] * dense["n_out"] * dense["repeat"])
        rows.append(row)
    return pd.DataFrame(rows).fillna("")


# -- physics: the same jets through teacher, student and firmware -----------------------------------------------------
def same_jet_scores(run: RunArtifacts, max_jets: int | None = 5000) -> dict[str, Any]:
    """Scores of the held-out test jets of the student's ``prepared.npz`` by the teacher, the student (Brevitas,
    bit-exact fixed point) and, when a firmware directory exists, the compiled hls4ml C simulation."""
    import torch

    from jbot_edge.firmware.emulate import HARDWARE_LEGS, load_firmware
    from jbot_edge.models.students import load_student, output_lsb, score_codes
    from jbot_edge.qat.distill import SPLIT_TEST

    if run.student_dir is None or not (run.student_dir / "prepared.npz").is_file():
        raise JbotEdgeError(f"{run.run_dir}: no student/prepared.npz (run `jbot-edge qat` first)")
    with np.load(run.student_dir / "prepared.npz", allow_pickle=False) as npz:
        test = np.flatnonzero(npz["split"] == SPLIT_TEST)[:max_jets]
        codes, teacher, labels = npz["codes"][test], npz["scores"][test], npz["labels"][test]
    model, _, spec, extra = load_student(run.student_dir)
    x = torch.from_numpy(spec.to_model_input(codes))
    scores = {"teacher": teacher.astype(np.float64),
              "student": score_codes(model, x).astype(np.float64) * output_lsb(model)}
    leg = None
    if run.firmware_dir is not None:
        firmware = load_firmware(run.firmware_dir)
        # The hardware leg this firmware has: hls4ml's C simulation, or the RTL's Verilator simulation.
        leg = next((name for name in HARDWARE_LEGS if name in firmware.legs), None)
        if leg is not None:
            scores["firmware"] = firmware.score_lsb(leg, codes).astype(np.float64) * firmware.output_lsb
    names = list((run.qat_report or {}).get("n_test", {}))
    train = list(extra.get("data", {}).get("train_labels") or (run.qat_report or {}).get("training", {}).get(
        "train_labels", []))
    if not names or not train:
        raise JbotEdgeError(f"{run.student_dir}: qat_report.json lacks the label names / training labels")
    return {"scores": scores, "labels": labels, "label_names": names, "background": train, "firmware_leg": leg,
            "emulate": run.emulate}


def split_by_class(data: Mapping[str, Any], scorer: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(background scores, {signal: scores}) of one scorer."""
    s, labels, names = data["scores"][scorer], data["labels"], data["label_names"]
    bkg = np.isin(labels, [names.index(n) for n in data["background"]])
    signals = {n: s[labels == i] for i, n in enumerate(names) if n not in data["background"] and (labels == i).any()}
    return s[bkg], signals


_LEG_NAMES = {"csim": "hls4ml C simulation", "rtl": "Verilator simulation of the RTL"}


def exactness_line(data: Mapping[str, Any]) -> str:
    """The counts behind the bit-exactness claim: test jets here, and emulate.json's data/fuzz counts and legs."""
    if "firmware" not in data["scores"]:
        return "no firmware directory (or no hardware leg runs here): firmware scores not shown"
    same = int((data["scores"]["firmware"] == data["scores"]["student"]).sum())
    n = len(data["labels"])
    leg = data.get("firmware_leg")
    line = (f"firmware ({_LEG_NAMES.get(leg, leg)}) = student on {same}/{n} test jets"
            + (", bit for bit" if same == n else " — NOT bit exact"))
    emulate = data.get("emulate")
    if emulate and "counts" in emulate:
        skipped = ", ".join(f"{s['leg']} ({s['reason']})" for s in emulate.get("legs_skipped", [])) or "none"
        line += (f"; emulate.json: {emulate['counts']['data']} jets, {emulate['counts']['fuzz']} fuzz equal on every "
                 f"leg ({', '.join(emulate['legs_run'])}; skipped: {skipped}), exact = {emulate['exact']}")
    elif emulate:
        line += "; emulate.json predates the per-leg counts: rerun `jbot-edge emulate`"
    return line


def plot_trigger_view(data: Mapping[str, Any], rates_khz: Sequence[float] = tuple(np.geomspace(0.3, 300, 25)),
                      working_point_khz: float = 3.0, background_rate_mhz: float = 28.61):
    """Signal efficiency vs trigger rate budget for each scorer (trigger_view semantics), one panel per signal."""
    from jbot_edge.evaluate.metrics import trigger_view

    plt = _pyplot()
    _, signals = split_by_class(data, "teacher")
    fig, axes = plt.subplots(1, len(signals), figsize=(4.3 * len(signals), 4), squeeze=False)
    n_bkg, highest = 0, 0.0
    for scorer in data["scores"]:
        bkg, sig = split_by_class(data, scorer)
        n_bkg = len(bkg)
        view = trigger_view(bkg, sig, list(rates_khz), background_rate_mhz)
        for ax, name in zip(axes[0], signals):
            efficiency = [row["signal_efficiency"][name] for row in view]
            highest = max(highest, *efficiency)
            ax.plot(rates_khz, efficiency, marker=".",
                    color=SCORE_COLORS.get(scorer), ls="--" if scorer == "firmware" else "-", label=scorer)
    floor_khz = background_rate_mhz * 1e3 / max(n_bkg, 1)
    for ax, name in zip(axes[0], signals):
        ax.axvline(working_point_khz, color="tab:red", ls=":", label=f"working point {working_point_khz:g} kHz")
        ax.axvspan(rates_khz[0], floor_khz, color="gray", alpha=0.15, label=f"< 1 background jet ({n_bkg} jets)")
        ax.set_xscale("log")
        ax.set_xlabel("trigger rate budget [kHz]")
        ax.set_ylabel(f"{name} efficiency per jet")
        ax.set_ylim(0, min(1.0, max(0.05, 1.15 * highest)))  # zoomed: at kHz rates efficiencies are small
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    return fig


def embedding_projection(run: RunArtifacts, max_jets: int = 2000, method: str = "pca", seed: int = 0):
    """2-D projection of the teacher's frozen [CLS] embeddings of (a subsample of) the run's jets."""
    from jbot_edge.data.reader import JetFile
    from jbot_edge.evaluate.clustering import project_2d
    from jbot_edge.pretrain.artifact import load_teacher

    if run.teacher_dir is None or run.jets is None:
        raise JbotEdgeError(f"{run.run_dir}: need teacher/ and jets.h5 for the embedding")
    teacher = load_teacher(run.teacher_dir)
    with JetFile(run.jets) as jets:
        index = np.sort(np.random.default_rng(seed).permutation(len(jets))[:max_jets])
        batch = jets.read(index)
        names = list(jets.label_names)
    embeddings = teacher.embed(batch)
    return project_2d(embeddings, batch.labels, method, max_points=max_jets, seed=seed), names


def fidelity_table(qat_report: Mapping[str, Any]):
    """Student vs teacher at the trigger's operating points (``qat_report.json`` → ``operating_points``): one row
    per (operating point, signal) with both TPRs, their ratio and the selected-set overlap, ± bootstrap errors."""
    import pandas as pd

    rows = []
    for point in qat_report.get("operating_points", []):
        rows.append({"point": point["name"], "per_jet_fpr": point["per_jet_fpr"], "resolved": point["resolved"],
                     "signal": f"background ({point['n_background_triggered']} triggered by the teacher)",
                     "overlap": f"{point['background_overlap']:.3f}"})
        for signal, r in point["signals"].items():
            e = r["error"]
            rows.append({"point": point["name"], "per_jet_fpr": point["per_jet_fpr"], "resolved": point["resolved"],
                         "signal": signal, "tpr_teacher": f"{r['tpr_teacher']:.4f} ± {e['tpr_teacher']:.4f}",
                         "tpr_student": f"{r['tpr_student']:.4f} ± {e['tpr_student']:.4f}",
                         "tpr_ratio": f"{r['tpr_ratio']:.3f} ± {e['tpr_ratio']:.3f}",
                         "overlap": f"{r['overlap']:.3f} ± {e['overlap']:.3f}"})
    return pd.DataFrame(rows).fillna("")


def goals_lines(qat_report: Mapping[str, Any]) -> list[str]:
    """The qat goal verdict in plain words: all met, or each missed goal with its shortfall."""
    goals = qat_report.get("goals", {})
    lines = ["all fidelity goals met" if goals.get("all_met") else "fidelity goals missed:"]
    lines += [f"  {m}" for m in goals.get("missed", [])]
    lines += [f"  not judged: {n}" for n in goals.get("not_judged", [])]
    lines += [f"  warning: {w}" for w in qat_report.get("warnings", [])]
    return lines
