"""``jbot-edge report``: execute the report notebooks against a run (and a sweep) and render them to HTML.

Output (``RUN_DIR/report/``, written to a temporary sibling and renamed into place: complete or absent)::

    latency_resources.html, physics_performance.html     the executed notebooks (nbconvert HTML, figures inline)
    latency_resources.ipynb, physics_performance.ipynb   the executed notebooks themselves
    figures/<NOTEBOOK>/<NAME>.png                         every figure, also as a file
    report.json       {"schema": "jbot-edge.report/1", "run", "sweep", "notebooks": [{"name", "html", "ipynb",
                       "seconds", "figures": [relative PNG paths]}], "figures": [all PNG paths]}

Notebooks read their parameters from the environment (``JBOT_EDGE_RUN``, ``JBOT_EDGE_SWEEP``, ``JBOT_EDGE_FIGURES``);
a cell error stops the report with the notebook, cell and exception named.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

REPORT_SCHEMA = "jbot-edge.report/1"
NOTEBOOK_DIR = Path(__file__).resolve().parent.parent.parent / "notebooks"
NOTEBOOKS = ("latency_resources", "physics_performance")


def _cell_error(exc: Exception) -> str:
    """The exception line of a failed cell (nbclient's message holds the whole traceback)."""
    ename, evalue = getattr(exc, "ename", None), getattr(exc, "evalue", None)
    if ename:
        return f"{ename}: {evalue}"
    return str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__


def execute_notebook(source: Path, env: dict[str, str], timeout: int):
    """Run every cell of ``source`` in a fresh kernel whose environment holds ``env``; returns the notebook."""
    import os

    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    from jbot_edge.errors import JbotEdgeError

    nb = nbformat.read(source, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(source.parent)}})
    # The kernel inherits this process' environment: set the parameters for the duration of the run only.
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError) as exc:
        index = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code" and any(
            o.get("output_type") == "error" for o in c.get("outputs", []))), None)
        where = f"cell {index}" if index is not None else "a cell"
        raise JbotEdgeError(f"notebook {source.name}: {where} failed: {_cell_error(exc)}") from exc
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return nb


def build_report(run: Path, sweep: Path | None, out: Path, timeout: int = 900) -> dict:
    import time

    import nbformat
    from nbconvert import HTMLExporter

    from jbot_edge.atomic import atomic_directory, write_json
    from jbot_edge.errors import JbotEdgeError
    from jbot_edge.logs import get_logger

    log = get_logger("jbot_edge.report")
    if not run.is_dir():
        raise JbotEdgeError(f"--run {run} is not a directory")
    if sweep is not None and not (sweep / "sweep.csv").is_file():
        raise JbotEdgeError(f"--sweep {sweep}: no sweep.csv (run `jbot-edge sweep --out {sweep}` first)")
    summary: dict = {"schema": REPORT_SCHEMA, "run": str(run), "sweep": str(sweep) if sweep else None,
                     "notebooks": [], "figures": []}
    with atomic_directory(out, owner="report") as tmp:
        for name in NOTEBOOKS:
            source = NOTEBOOK_DIR / f"{name}.ipynb"
            if not source.is_file():
                raise JbotEdgeError(f"notebook {source} is missing from the installation")
            figure_dir = tmp / "figures" / name
            env = {"JBOT_EDGE_RUN": str(run.resolve()), "JBOT_EDGE_SWEEP": str(sweep.resolve()) if sweep else "",
                   "JBOT_EDGE_FIGURES": str(figure_dir), "MPLBACKEND": "Agg"}
            log.info("executing %s", source.name)
            start = time.perf_counter()
            nb = execute_notebook(source, env, timeout)
            seconds = round(time.perf_counter() - start, 1)
            nbformat.write(nb, tmp / f"{name}.ipynb")
            html, _ = HTMLExporter().from_notebook_node(nb)
            (tmp / f"{name}.html").write_text(html)
            figures = sorted(str(p.relative_to(tmp)) for p in figure_dir.glob("*.png")) if figure_dir.is_dir() else []
            summary["notebooks"].append({"name": name, "html": f"{name}.html", "ipynb": f"{name}.ipynb",
                                         "seconds": seconds, "figures": figures})
            summary["figures"] += figures
            log.info("%s: %d figures in %.0f s", name, len(figures), seconds)
        write_json(tmp / "report.json", summary)
    return summary


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report(
        run: Path = typer.Option(..., "--run", help="Run directory (`jbot-edge demo` layout)."),
        sweep: Optional[Path] = typer.Option(None, "--sweep", help="Sweep directory (`jbot-edge sweep --out`)."),
        out: Optional[Path] = typer.Option(None, "--out", help="Report directory (default RUN_DIR/report)."),
        timeout: int = typer.Option(900, "--timeout", help="Seconds a single cell may run."),
        force: bool = typer.Option(False, "--force", help="Replace OUT even if it is not a previous output of this "
                                   "command."),
    ) -> None:
        """Execute notebooks/latency_resources.ipynb and physics_performance.ipynb against RUN (and SWEEP) and write
        them as HTML with report.json."""
        from jbot_edge.errors import JbotEdgeError

        if timeout < 1:
            raise JbotEdgeError(f"--timeout {timeout}: expected a positive number of seconds")
        from jbot_edge.outputs import check_output_dir

        out_dir = out or run / "report"
        check_output_dir(out_dir, "report", inputs=[run, sweep], force=force)
        build_report(run, sweep, out_dir, timeout)
        typer.echo(str(out_dir / "report.json"))
