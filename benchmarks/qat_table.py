"""The README's distillation fidelity table and Pareto plot, generated from ``benchmarks/qat.py``'s JSON.

Usage::

    python benchmarks/qat_table.py benchmarks/results/qat.json [MORE.json ...] [--plot docs/qat_pareto.png]
        [--readme README.md] [--rate benchmarks/results/qat_rate.json]

Several JSON files (e.g. the recipe sweep and the student grid run as separate processes) are joined point by point.
``--rate``: ``qat_rate.py --all-points``'s JSON adds each point's background overlap at 10 kHz on its 150k-jet
background file (the trigger's rate, resolved: ~52 jets above threshold instead of the test split's ~2).

Prints the Markdown table; ``--readme`` replaces the text between ``<!-- qat-table:start -->`` and
``<!-- qat-table:end -->`` with it (nothing is typed by hand), ``--plot`` draws fidelity (the lowest student/teacher
AUC ratio over the signals) against the da4ml LUT estimate, with the Pareto front.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

START, END = "<!-- qat-table:start -->", "<!-- qat-table:end -->"


def _per_signal(values: dict[str, float]) -> str:
    return " / ".join(f"{values[s]:.3f}" for s in sorted(values))


def _lowest(values: dict[str, float]) -> float:
    return min(values.values()) if values else 0.0


def _budget_ratios(point: dict) -> str:
    budgets = [k for k in point["tpr_ratio"] if k.endswith("kHz")]
    return " / ".join(f"{_lowest(point['tpr_ratio'][b]):.2f}" for b in budgets)


def _background_overlap(point: dict, rate: dict | None) -> str:
    entry = (rate or {}).get("per_point", {}).get(point.get("same_as", point["name"]))
    if not entry or "10 kHz" not in entry:
        return "–"
    value, error = entry["10 kHz"]
    return f"{value:.2f} ± {error:.2f}"


def table(result: dict, rate: dict | None = None) -> str:
    points = result["points"]
    signals = sorted(points[0]["auc_ratio"]) if points else []
    budgets = [k for k in points[0]["tpr_ratio"] if k.endswith("kHz")] if points else []
    sig = "/".join(signals)
    head = ["student", "bits", "recipe", "epochs", "params", "LUT (da4ml)", "latency ns", "bit-exact",
            f"AUC ratio {sig}", f"teacher TPR @1e-2 {sig}", f"TPR ratio @1e-2 {sig}", f"TPR ratio @1e-3 {sig}",
            f"min TPR ratio {' / '.join(budgets)}", f"overlap @10 kHz {sig}"]
    head += ["background overlap @10 kHz (150k jets)"] if rate else []
    head += ["goals"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in points:
        rtl = p.get("rtl", {})
        block = "†" if rtl.get("input_block") else ""
        if block and rtl["input_block"].get("min_stages") is None:
            block = " + input block (not estimated: no Yosys)"
        term = ""
        if rtl.get("jet_term"):
            term = "‡" if rtl["jet_term"].get("stages") is not None else " + jet term (not estimated: no Yosys)"
        lut = f"{rtl['lut_da4ml']:.0f} ({rtl['lut_percent']:.2f} %){block}{term}" if rtl else "–"
        latency = (("≥ " if block else "") + f"{rtl['latency_ns']:.1f}{block}{term}") if rtl else "–"
        rows.append("| " + " | ".join([
            p["kind"], str(p["bits"]), p["recipe"], str(p.get("epochs", result["epochs"])), str(p["parameters"]), lut,
            latency,
            ("yes" if rtl["bit_exact"] else f"no ({rtl['exact']}/{rtl['n_exact_checked']})") if rtl else "–",
            _per_signal(p["auc_ratio"]), _per_signal(p["tpr_teacher"]["fpr 1e-2"]),
            _per_signal(p["tpr_ratio"]["fpr 1e-2"]),
            _per_signal(p["tpr_ratio"]["fpr 1e-3"]), _budget_ratios(p), _per_signal(p["overlap"]["10 kHz"]),
            *([_background_overlap(p, rate)] if rate else []),
            "met" if p["goals_all_met"] else f"{len(p['goals_missed'])} missed",
        ]) + " |")
    n_test = points[0]["n_test"] if points else {}
    note = (f"\nHeld-out test jets per label: {', '.join(f'{k} {v}' for k, v in n_test.items())}; "
            f"{result['epochs']} epochs" + (f" at batch {result['batch_size']}" if "batch_size" in result else "")
            + f", {result['threads']} threads, overrides {result.get('overrides') or 'none'}, "
            f"run took {result['wall_s'] / 60:.1f} min in all, measured at commit "
            f"`{', '.join(sorted(set(result.get('commits') or [result.get('commit') or 'unknown'])))}`. "
            "Ratios are student/teacher at each one's own threshold; overlap = share of the teacher's triggered "
            "signal jets the student also triggers. Bootstrap errors are in the JSON; goals count only TPR ratios and "
            "overlaps where the teacher's TPR is ≥ 0.02 (the rest are listed as not judged)."
            + (" † includes the integer input block ahead of the network (derived columns / pT normalisation; "
               "firmware/rtl/input_block.py): its Yosys LUT estimate, and the pipeline stages its deepest path "
               "needs at least (DSP delays not modelled), so that latency is a lower bound."
               if any((p.get("rtl") or {}).get("input_block") for p in points) else "")
            + (" ‡ includes the student's jet term beside the network (models/jet_term.py, firmware/rtl/jet_term.py): "
               "its Yosys LUT estimate (multiplies in LUTs) is added to da4ml's, and the latency is the network's "
               "stages or the term's, whichever is more, plus one adder stage."
               if any((p.get("rtl") or {}).get("jet_term") for p in points) else "")
            + (f" Background overlap: share of the teacher's triggered jets among {rate['n_background']} background "
               f"jets of `{rate['data']}` (another seed, never trained on) that the student triggers too, measured "
               f"at commit `{rate['commit']}`." if rate else "") + "\n")
    return "\n".join(rows) + "\n" + note


def plot(result: dict, path: Path) -> None:
    """Lowest AUC ratio over the signals (± its bootstrap error) against the da4ml LUT estimate, with the Pareto
    front. The TPR ratios are left to the table: with a teacher whose low-FPR efficiency is a few jets they are
    dominated by counting noise, and a plot would over-read them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [p for p in result["points"] if p.get("rtl")]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    xs, ys = [], []
    for p in points:
        worst = min(p["auc_ratio"], key=p["auc_ratio"].get)
        xs.append(p["rtl"]["lut_da4ml"])
        ys.append(p["auc_ratio"][worst])
        ax.errorbar(xs[-1], ys[-1], yerr=p["auc_ratio_err"][worst], fmt="o" if p["kind"] == "deepsets" else "s",
                    color="tab:blue" if p["kind"] == "deepsets" else "tab:orange", ms=4, capsize=2)
        ax.annotate(f"{p['kind'][:2]}{p['bits']} {p['recipe']}", (xs[-1], ys[-1]), fontsize=6, alpha=0.8,
                    xytext=(3, 2), textcoords="offset points")
    front, best = [], -1.0
    for i in sorted(range(len(xs)), key=lambda i: (xs[i], -ys[i])):
        if ys[i] > best:
            front.append(i)
            best = ys[i]
    ax.plot([xs[i] for i in front], [ys[i] for i in front], lw=1, alpha=0.6, color="tab:green", label="Pareto front")
    ax.axhline(0.98, ls=":", color="tab:red", label="goal 0.98")
    ax.set_xlabel("da4ml LUT estimate (VU13P: 2 % = 34.6k)")
    ax.set_ylabel("lowest student/teacher AUC ratio over signals")
    ax.set_title("Distillation fidelity vs firmware cost (o Deep Sets, □ MLP)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", type=Path, nargs="+")
    parser.add_argument("--plot", type=Path)
    parser.add_argument("--readme", type=Path)
    parser.add_argument("--rate", type=Path, help="qat_rate.py --all-points JSON: adds the background-overlap column")
    parser.add_argument("--joined", type=Path, help="also write the joined JSON here (several inputs → one file)")
    args = parser.parse_args()
    parts = [json.loads(p.read_text()) for p in args.json]
    result = {**parts[0], "points": [pt for part in parts for pt in part["points"]],
              "wall_s": sum(part["wall_s"] for part in parts), "commits": [part.get("commit") for part in parts]}
    if args.joined:
        args.joined.parent.mkdir(parents=True, exist_ok=True)
        args.joined.write_text(json.dumps({**result, "parts": [str(p) for p in args.json]}, indent=2) + "\n")
    text = table(result, json.loads(args.rate.read_text()) if args.rate else None)
    print(text)
    if args.plot:
        plot(result, args.plot)
    if args.readme:
        readme = args.readme.read_text()
        if START not in readme or END not in readme:
            raise SystemExit(f"error: {args.readme} has no {START} ... {END} markers")
        head, rest = readme.split(START, 1)
        args.readme.write_text(head + START + "\n" + text + END + rest.split(END, 1)[1])


if __name__ == "__main__":
    main()
