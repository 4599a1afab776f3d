"""The report notebooks, executed with nbclient against real tiny artifacts, and `jbot-edge report`."""

from __future__ import annotations

import json
import shutil

import nbformat
import pytest

from jbot_edge.commands.report import NOTEBOOK_DIR, NOTEBOOKS, execute_notebook
from jbot_edge.errors import JbotEdgeError


@pytest.fixture(scope="module")
def tiny(tiny_sweep):
    return tiny_sweep


def test_notebooks_are_clean_parameterised_sources():
    for name in NOTEBOOKS:
        nb = nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)
        nbformat.validate(nb)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(not c.outputs and c.execution_count is None for c in code), f"{name}: outputs committed"
        assert "JBOT_EDGE_RUN" in code[0].source and "os.environ.get" in code[0].source


def test_report_executes_both_notebooks_to_html(tiny, run_cli):
    result = run_cli("report", "--run", tiny.run, "--sweep", tiny.sweep)
    assert result.returncode == 0, result.stderr[-3000:]
    out = tiny.run / "report"
    assert result.stdout.strip().splitlines()[-1] == str(out / "report.json")
    report = json.loads((out / "report.json").read_text())
    assert report["schema"] == "jbot-edge.report/1"
    assert [n["name"] for n in report["notebooks"]] == list(NOTEBOOKS)
    figures = {f.rsplit("/", 1)[-1] for f in report["figures"]}
    assert {"latency_vs_budget.png", "resources_percent_of_board.png", "pareto_auc_t_vs_LUT.png",
            "pareto_auc_t_vs_latency.png", "roc_teacher_student_firmware.png", "scores_teacher.png",
            "scores_student.png", "scores_firmware.png", "trigger_rate_view.png",
            "teacher_embedding_pca.png"} <= figures
    for figure in report["figures"]:
        assert (out / figure).stat().st_size > 5000  # a rendered plot, not an empty canvas
    for entry in report["notebooks"]:
        html = (out / entry["html"]).read_text()
        assert html.count("data:image/png;base64") >= len(entry["figures"])
        executed = nbformat.read(out / entry["ipynb"], as_version=4)
        assert not [o for c in executed.cells if c.cell_type == "code" for o in c.outputs
                    if o.output_type == "error"]
    physics = (out / "physics_performance.html").read_text()
    # The firmware leg is the compiled C simulation and reproduces the student bit for bit on every test jet.
    assert "bit for bit" in physics and "firmware (hls4ml C simulation) = student on" in physics
    latency = nbformat.read(out / "latency_resources.ipynb", as_version=4)
    outputs = json.dumps([o for c in latency.cells if c.cell_type == "code" for o in c.outputs])
    assert "sweep: 2 finished designs" in outputs and "no sweep table given" not in outputs


def test_notebook_without_sweep_says_so(tiny, tmp_path):
    nb = execute_notebook(NOTEBOOK_DIR / "latency_resources.ipynb",
                          {"JBOT_EDGE_RUN": str(tiny.run), "JBOT_EDGE_SWEEP": "",
                           "JBOT_EDGE_FIGURES": str(tmp_path / "figs")}, timeout=300)
    text = json.dumps([o for c in nb.cells if c.cell_type == "code" for o in c.outputs])
    assert "no sweep table given" in text
    assert "no evaluation" in text  # the tiny run has no evaluate/ folder
    assert {p.name for p in (tmp_path / "figs").iterdir()} == {"latency_vs_budget.png",
                                                                "resources_percent_of_board.png"}


def test_report_fails_on_a_broken_artifact(tiny, tmp_path, run_cli):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "teacher").symlink_to(tiny.teacher)
    shutil.copytree(tiny.run / "firmware", broken / "firmware", symlinks=True)
    (broken / "firmware" / "synth_report.json").write_text("{ not json")
    result = run_cli("report", "--run", broken)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: notebook latency_resources.ipynb") and "synth_report.json" in last, last
    assert not (broken / "report").exists()
    with pytest.raises(JbotEdgeError, match="no sweep.csv"):
        from jbot_edge.commands.report import build_report

        build_report(tiny.run, tmp_path, tmp_path / "r")
