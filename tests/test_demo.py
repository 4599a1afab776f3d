"""jbot-edge demo: a stage skipped because its output exists is re-checked against its own verdict."""

from __future__ import annotations

import json

import yaml


def _demo_config(tmp_path):
    config = tmp_path / "demo.yaml"
    config.write_text(yaml.safe_dump({"stages": [{
        "name": "emulate", "done": "firmware/emulate.json", "check": {"key": "exact", "equals": True},
        "argv": ["emulate", "--firmware", "{out}/firmware", "--data", "{out}/jets.h5"]}]}))
    return config


def test_a_skipped_stage_whose_verdict_failed_fails_the_demo(tmp_path, run_cli):
    from jbot_edge.outputs import mark_output

    out = tmp_path / "demo"
    mark_output(out, "demo")  # an earlier demo's directory, as that run left it
    (out / "firmware").mkdir(parents=True)
    emulate = {"schema": "jbot-edge.emulate/1", "n": 2000, "n_fuzz": 81, "exact": False,
               "counts": {"data": "1990/2000", "fuzz": "81/81"}, "legs_run": ["brevitas", "qonnx", "csim"],
               "legs_skipped": [], "reasons": ["data: mismatches {'brevitas_vs_csim': 10}"]}
    (out / "firmware" / "emulate.json").write_text(json.dumps(emulate))
    result = run_cli("demo", "--out", out, "--config", _demo_config(tmp_path))
    assert result.returncode == 1, result.stderr[-2000:]
    assert "emulate: " in result.stderr and "exact is false, expected true" in result.stderr
    summary = json.loads((out / "demo_summary.json").read_text())
    assert summary["stages"][0]["status"].startswith("skipped (output exists); failed:")
    assert summary["headline"]["emulate"]["exact"] is False
    assert summary["headline"]["emulate"]["counts"] == {"data": "1990/2000", "fuzz": "81/81"}

    emulate["exact"] = True
    (out / "firmware" / "emulate.json").write_text(json.dumps(emulate))
    result = run_cli("demo", "--out", out, "--config", _demo_config(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((out / "demo_summary.json").read_text())["failed_stages"] == []
