"""``jbot-edge emulate``: Brevitas vs QONNX vs hls4ml C simulation, bit for bit, on data and the fuzz set."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("emulate")
    def emulate(
        firmware: Path = typer.Option(..., "--firmware", help="Firmware directory from `jbot-edge synth`."),
        data: Path = typer.Option(..., "--data", help="Canonical jet file (HDF5)."),
        n: int | None = typer.Option(None, "--n", help="Number of jets to emulate (default: 10000)."),
        batch_size: int = typer.Option(4096, "--batch-size", help="Jets per batch."),
        out: Path | None = typer.Option(None, "--out", help="Where to write emulate.json (default FW_DIR)."),
        force: bool = typer.Option(False, "--force", help="Replace OUT even if it is not a previous output of this "
                                   "command."),
        fast: bool = typer.Option(False, "--fast", help="Add the vectorised integer emulator as a leg "
                                  "(checked bit for bit against the others)."),
        score_all: Path | None = typer.Option(None, "--score-all", help="Then stream EVERY jet of --data through "
                                              "the fast emulator in bounded memory and write its int64 scores "
                                              "(HDF5 dataset scores_lsb) here; implies --fast."),
    ) -> None:
        """Score N jets + the fuzz set (codes, and raw inputs at/beyond the input boundaries) with every leg; exit 0
        only when every comparison is exact."""
        import sys

        from jbot_edge.atomic import write_json
        from jbot_edge.data.reader import JetFile
        from jbot_edge.errors import JbotEdgeError
        from jbot_edge.firmware.emulate import (
            EMULATE_SCHEMA,
            compare,
            compare_raw,
            emulation_verdict,
            fuzz_set,
            load_firmware,
            merge_results,
            throughput,
        )
        from jbot_edge.firmware.fuzz import fuzz_raw_inputs
        from jbot_edge.logs import get_logger, progress_bar
        from jbot_edge.outputs import claim_output_file, has_json_schema

        log = get_logger("jbot_edge.emulate")
        n_jets = 10000 if n is None else n
        if n_jets < 1:
            raise JbotEdgeError(f"--n {n_jets}: expected a positive number of jets")
        if batch_size < 1:
            raise JbotEdgeError(f"--batch-size {batch_size}: expected a positive integer")
        fast = fast or score_all is not None
        report_path = claim_output_file((out or firmware) / "emulate.json", "emulate",
                                        owned=has_json_schema(EMULATE_SCHEMA), inputs=[data], force=force)
        fw = load_firmware(firmware, fast=fast)
        log.info("C simulation: %s", fw.csim_source)
        timings: dict[str, list[float]] = {}
        results = []
        with JetFile(data) as jets:
            fw.spec.check_file(jets)
            n_jets = min(n_jets, jets.n_jets)
            with progress_bar() as progress:
                task = progress.add_task("emulating", total=n_jets)
                for batch in jets.iter_batches(batch_size, particle_features=fw.spec.stored_feature_names,
                                               jet_features=[], stop=n_jets):
                    codes = fw.spec.quantize(batch)
                    results.append(compare(fw, codes, timings=timings))
                    progress.advance(task, len(batch))
        data_result = merge_results(results)
        fuzz, names, rounding_coverage = fuzz_set(fw)
        fuzz_result = compare(fw, fuzz, names)
        raw_result = compare_raw(fw, *fuzz_raw_inputs(fw.spec))
        verdict = emulation_verdict(fw, data_result, fuzz_result, raw_result)
        exact = verdict["exact"]
        summary = {
            "schema": EMULATE_SCHEMA,
            "firmware": str(firmware),
            "data": str(data),
            "n": data_result["n"],
            "n_fuzz": fuzz_result["n"],
            "output_lsb": fw.output_lsb,
            "legs": list(fw.legs),
            **verdict,
            "csim_source": fw.csim_source,
            "n_fuzz_raw": raw_result["n"],
            "fuzz_rounding": rounding_coverage,
            "datasets": {"data": data_result, "fuzz": fuzz_result, "fuzz_raw": raw_result},
            "throughput_jets_per_s": throughput(timings),
        }
        if score_all is not None and summary["exact"]:
            from jbot_edge.firmware.fast_emulate import score_file

            summary["score_all"] = {"out": str(score_all), **score_file(fw.scorers["fast"].emulator, data, score_all)}
            log.info("fast emulator: %d jets scored into %s (%.0f jets/s end to end)", summary["score_all"]["n"],
                     score_all, summary["score_all"]["jets_per_s"])
        path = write_json(report_path, summary)
        for name, result in summary["datasets"].items():
            for pair, c in result["comparisons"].items():
                log.info("%s %s: %d/%d exact, max |diff| %d LSB", name, pair, c["exact"], result["n"],
                         c["max_abs_diff_lsb"])
        log.info("legs run: %s; skipped: %s; %s jets, %s fuzz equal on every leg", ", ".join(verdict["legs_run"]),
                 ", ".join(f"{s['leg']} ({s['reason']})" for s in verdict["legs_skipped"]) or "none",
                 verdict["counts"]["data"], verdict["counts"]["fuzz"])
        typer.echo(str(path))
        if not exact:
            typer.echo("error: emulation is NOT bit exact: " + "; ".join(verdict["reasons"]) + f" (see {path})",
                       err=True)
            sys.exit(1)

