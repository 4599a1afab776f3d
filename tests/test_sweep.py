"""jbot-edge sweep: a real 2-point grid (qat → synth → emulate) over a tiny real teacher, and its resume logic."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest

from jbot_edge.sweep import pareto_front
from sweep_artifacts import TINY_SWEEP


@pytest.fixture(scope="module")
def tiny(tiny_sweep):
    return tiny_sweep


def _rows(sweep_dir):
    with open(sweep_dir / "sweep.csv", newline="") as fh:
        return {r["point_id"]: r for r in csv.DictReader(fh)}


def test_pareto_front_keeps_only_undominated_points():
    #          cheap+good  dominated  expensive+best  unknown cost  tie with the first
    lut = [100, 200, 300, np.nan, 100]
    auc = [0.8, 0.7, 0.9, 0.99, 0.8]
    assert pareto_front(lut, auc).tolist() == [True, False, True, False, True]


def test_tiny_sweep_writes_one_row_per_point(tiny):
    assert tiny.sweep_result.stdout.strip().splitlines()[-1] == str(tiny.sweep / "sweep.csv")
    rows = _rows(tiny.sweep)
    assert set(rows) == {"ds8-w4a4-rf1-4.167ns", "mlp8-w4a4-rf1-4.167ns"}
    assert {r["kind"] for r in rows.values()} == {"deepsets", "mlp"}
    for point_id, row in rows.items():
        assert row["status"] == "ok", row["status"]
        assert row["weight_bits"] == row["act_bits"] == "4" and row["reuse_factor"] == "1"
        qat = json.loads((tiny.sweep / "points" / point_id / "student" / "qat_report.json").read_text())
        for signal in ("w", "z", "t"):
            assert float(row[f"auc_student_{signal}"]) == pytest.approx(qat["auc_student"][signal], rel=1e-5)
            assert float(row[f"auc_teacher_{signal}"]) == pytest.approx(qat["auc_teacher"][signal], rel=1e-5)
            assert 0 <= float(row[f"eff_student_{signal}"]) <= 1 and 0 <= float(row[f"eff_teacher_{signal}"]) <= 1
        assert float(row["spearman"]) == pytest.approx(qat["spearman"]["all"], rel=1e-5, abs=1e-9)
        # 3 kHz of 28.61 MHz crossings, one jet per crossing.
        assert float(row["per_jet_fpr"]) == pytest.approx(3.0 / 28610, rel=1e-3)
        assert row["bit_exact"] == "true" and row["emulate_n"] == "200"
        # Figures always carry their source; with da4ml installed and no vendor tool they are RTL estimates.
        assert row["latency_source"] and row["resource_source"]
        if row["latency_source"] != "unknown":
            assert float(row["latency_ns"]) == pytest.approx(int(row["latency_cycles"]) * 4.167, rel=1e-3)
            assert float(row["LUT"]) > 0 and float(row["LUT_pct"]) == pytest.approx(
                100 * float(row["LUT"]) / 1728000, rel=1e-3)
            assert row["budget_verdict"] in ("fits", "exceeds")
    summary = json.loads((tiny.sweep / "sweep_summary.json").read_text())
    assert summary["schema"] == "jbot-edge.sweep_summary/1"
    assert summary["n_points"] == summary["n_ok"] == 2 and summary["n_failed"] == 0
    assert set(summary["bit_exact"].values()) == {True}
    # The teacher was scored once: every point's prepared.npz is the shared file itself.
    shared = os.stat(tiny.sweep / "shared" / "prepared.npz")
    for point_id in rows:
        linked = os.stat(tiny.sweep / "points" / point_id / "student" / "prepared.npz")
        assert (linked.st_ino, linked.st_dev) == (shared.st_ino, shared.st_dev)


def test_resume_skips_finished_points_and_stages(tiny, run_cli):
    points = tiny.sweep / "points"
    ds, mlp = "ds8-w4a4-rf1-4.167ns", "mlp8-w4a4-rf1-4.167ns"
    student_mtime = {p: (points / p / "student" / "student.pt").stat().st_mtime_ns for p in (ds, mlp)}
    before = _rows(tiny.sweep)
    # Interrupt the mlp point after its synth: its row and its emulation are gone.
    with open(tiny.sweep / "sweep.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        kept = [r for r in reader if r["point_id"] != mlp]
        fields = reader.fieldnames
    with open(tiny.sweep / "sweep.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(kept)
    (points / mlp / "firmware" / "emulate.json").unlink()

    result = run_cli("sweep", "--config", TINY_SWEEP, "--run", tiny.teacher, "--data", tiny.data, "--out", tiny.sweep)
    assert result.returncode == 0, result.stderr[-3000:]
    log = " ".join(result.stderr.split())
    assert f"[{ds}] finished already" in log
    assert f"[{mlp}] emulate" in log and f"[{mlp}] qat" not in log and f"[{mlp}] synth" not in log
    assert (points / mlp / "firmware" / "emulate.json").is_file()
    assert {p: (points / p / "student" / "student.pt").stat().st_mtime_ns for p in (ds, mlp)} == student_mtime
    after = _rows(tiny.sweep)
    assert set(after) == {ds, mlp}
    for key in ("auc_student_t", "eff_student_t", "LUT", "latency_ns", "bit_exact"):
        assert after[mlp][key] == before[mlp][key]


def test_bad_sweep_inputs_fail_with_one_line(tmp_path, tiny, run_cli):
    def fails(*args, match: str) -> None:
        result = run_cli("sweep", *args)
        assert result.returncode == 2, result.stderr
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("error:") and match in last, result.stderr

    bad = tmp_path / "bad.yaml"
    bad.write_text(f"inherit: {TINY_SWEEP}\ngrid: {{bitz: [4]}}\n")
    fails("--config", bad, "--run", tiny.teacher, "--data", tiny.data, "--out", tmp_path / "o", match="grid.bitz")
    fails("--config", TINY_SWEEP, "--run", tiny.teacher, "--data", tiny.data, "--out", tmp_path / "o",
          "grid.weight_bits=[1]", match="grid.weight_bits")
    no_head = tmp_path / "no-head"
    no_head.mkdir()
    (no_head / "teacher.pt").symlink_to(tiny.teacher / "teacher.pt")
    fails("--config", TINY_SWEEP, "--run", no_head, "--data", tiny.data, "--out", tmp_path / "o",
          match="score_head.json")
    assert not (tmp_path / "o" / "sweep.csv").exists()
