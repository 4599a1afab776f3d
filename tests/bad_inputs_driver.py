"""Run many ``jbot-edge`` invocations in ONE process and record what each one did (used by test_bad_inputs.py).

Usage: ``python tests/bad_inputs_driver.py CASES.json RESULTS.json`` where CASES.json is ``[{"id", "cwd",
"argv"}]``. Each case runs the real CLI entry point (:func:`jbot_edge.cli.main`, exactly what ``python -m jbot_edge``
runs) in its own working directory with stdout/stderr captured; an exception escaping ``main`` is recorded as a
traceback. Paying the interpreter, torch and hls4ml import cost once keeps ~80 bad-input cases to seconds.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import time
import traceback


def run_case(argv: list[str], cwd: str) -> dict:
    from jbot_edge.cli import main

    out, err = io.StringIO(), io.StringIO()
    code, escaped = 0, None
    previous = os.getcwd()
    start = time.perf_counter()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - a bug escaping main is exactly what the test looks for
        code, escaped = 1, traceback.format_exc()
    finally:
        os.chdir(previous)
    return {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue(), "traceback": escaped,
            "seconds": round(time.perf_counter() - start, 3)}


def main() -> None:
    cases = json.loads(open(sys.argv[1]).read())
    results = {case["id"]: run_case(case["argv"], case["cwd"]) for case in cases}
    with open(sys.argv[2], "w") as fh:
        json.dump(results, fh)


if __name__ == "__main__":
    main()
