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
        fast: bool = typer.Option(False, "--fast", help="Add the vectorised integer emulator as a leg "
                                  "(checked bit for bit against the others)."),
        score_all: Path | None = typer.Option(None, "--score-all", help="Then stream EVERY jet of --data through "
                                              "the fast emulator in bounded memory and write its int64 scores "
                                              "(HDF5 dataset scores_lsb) here; implies --fast."),
    ) -> None:
        """Score N jets + the fuzz set with every leg; exit 0 only when every comparison is exact."""
        import sys

        from jbot_edge.atomic import write_json
        from jbot_edge.data.reader import JetFile
        from jbot_edge.errors import JbotEdgeError
        from jbot_edge.firmware.emulate import (
            EMULATE_SCHEMA,
            all_exact,
            compare,
            load_firmware,
            throughput,
        )
        from jbot_edge.firmware.fuzz import fuzz_codes
        from jbot_edge.logs import get_logger, progress_bar

        log = get_logger("jbot_edge.emulate")
        n_jets = 10000 if n is None else n
        if n_jets < 1:
            raise JbotEdgeError(f"--n {n_jets}: expected a positive number of jets")
        if batch_size < 1:
            raise JbotEdgeError(f"--batch-size {batch_size}: expected a positive integer")
        fast = fast or score_all is not None
        fw = load_firmware(firmware, fast=fast)
        log.info("C simulation: %s", fw.csim_source)
        timings: dict[str, list[float]] = {}
        results = []
        with JetFile(data) as jets:
            fw.spec.check_file(jets)
            n_jets = min(n_jets, jets.n_jets)
            with progress_bar() as progress:
                task = progress.add_task("emulating", total=n_jets)
                for batch in jets.iter_batches(batch_size, particle_features=fw.spec.feature_names,
                                               jet_features=[], stop=n_jets):
                    codes = fw.spec.quantize(batch)
                    results.append((codes, compare(fw, codes, timings=timings)))
                    progress.advance(task, len(batch))
        data_result = _merge(results)
        fuzz, names = fuzz_codes(fw.spec)
        fuzz_result = compare(fw, fuzz, names)
        exact = all_exact(data_result) and all_exact(fuzz_result)
        summary = {
            "schema": EMULATE_SCHEMA,
            "firmware": str(firmware),
            "data": str(data),
            "n": data_result["n"],
            "n_fuzz": fuzz_result["n"],
            "output_lsb": fw.output_lsb,
            "legs": list(fw.legs),
            "csim_source": fw.csim_source,
            "datasets": {"data": data_result, "fuzz": fuzz_result},
            "exact": exact,
            "throughput_jets_per_s": throughput(timings),
        }
        if score_all is not None and exact:
            from jbot_edge.firmware.fast_emulate import score_file

            summary["score_all"] = {"out": str(score_all), **score_file(fw.scorers["fast"], data, score_all)}
            log.info("fast emulator: %d jets scored into %s (%.0f jets/s end to end)", summary["score_all"]["n"],
                     score_all, summary["score_all"]["jets_per_s"])
        path = write_json((out or firmware) / "emulate.json", summary)
        for name, result in summary["datasets"].items():
            for pair, c in result["comparisons"].items():
                log.info("%s %s: %d/%d exact, max |diff| %d LSB", name, pair, c["exact"], result["n"],
                         c["max_abs_diff_lsb"])
        typer.echo(str(path))
        if not exact:
            typer.echo("error: emulation is NOT bit exact; see the first mismatching jets in " + str(path), err=True)
            sys.exit(1)


def _merge(results):
    """Combine per-batch compare() results, re-indexing mismatches to positions in the whole sample."""
    from jbot_edge.firmware.emulate import MAX_REPORTED_MISMATCHES

    merged = {"n": 0, "comparisons": {}, "first_mismatches": []}
    for codes, result in results:
        offset = merged["n"]
        merged["n"] += result["n"]
        for pair, c in result["comparisons"].items():
            m = merged["comparisons"].setdefault(pair, {"exact": 0, "mismatched": 0, "max_abs_diff_lsb": 0})
            m["exact"] += c["exact"]
            m["mismatched"] += c["mismatched"]
            m["max_abs_diff_lsb"] = max(m["max_abs_diff_lsb"], c["max_abs_diff_lsb"])
        for entry in result["first_mismatches"]:
            if len(merged["first_mismatches"]) < MAX_REPORTED_MISMATCHES:
                merged["first_mismatches"].append({**entry, "index": entry["index"] + offset})
    return merged
