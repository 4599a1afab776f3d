"""The ``jbot-edge`` command line.

Each subcommand lives in its own module under :mod:`jbot_edge.commands` and exposes ``register(app)``; heavy
imports (torch, hls4ml, pythia) happen inside the command so ``--help`` stays fast. Errors caused by user input
(:class:`jbot_edge.errors.JbotEdgeError`) print one ``error: ...`` line and exit with status 2.
"""

from __future__ import annotations

import errno
import importlib
import sys

import typer

from jbot_edge.errors import JbotEdgeError, shorten

#: Registered commands, in pipeline order. A command is listed here only once it works end to end.
COMMAND_MODULES = [
    "jbot_edge.commands.info",
    "jbot_edge.commands.generate",
    "jbot_edge.commands.merge",
    "jbot_edge.commands.convert",
    "jbot_edge.commands.pretrain",
    "jbot_edge.commands.import_model",
    "jbot_edge.commands.evaluate",
    "jbot_edge.commands.qat",
    "jbot_edge.commands.synth",
    "jbot_edge.commands.emulate",
    "jbot_edge.commands.sweep",
    "jbot_edge.commands.report",
    "jbot_edge.commands.demo",
]

app = typer.Typer(
    name="jbot-edge",
    help="From unlabeled jets to level-1-trigger firmware: generate → pretrain → evaluate → qat → synth → emulate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)



@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging.")) -> None:
    from jbot_edge.logs import setup_logging

    setup_logging(verbose)


for _module in COMMAND_MODULES:
    importlib.import_module(_module).register(app)


def main(argv: list[str] | None = None) -> None:
    try:
        from typer._click.exceptions import ClickException, NoArgsIsHelpError
    except ImportError:  # typer releases that use click itself
        from click.exceptions import ClickException, NoArgsIsHelpError  # type: ignore[no-redef]
    try:
        code = app(args=argv, prog_name="jbot-edge", standalone_mode=False)
    except NoArgsIsHelpError as exc:  # `jbot-edge` or a group without arguments: the help text, as usual
        exc.show()
        sys.exit(exc.exit_code)
    except ClickException as exc:  # usage errors (unknown option, `--n abc`, ...): one line, like every other error
        where = exc.ctx.command_path if getattr(exc, "ctx", None) is not None else "jbot-edge"
        message = " ".join(exc.format_message().split())
        typer.echo(f"error: {shorten(message, 300, quote=False)} (see `{where} --help`)", err=True)
        sys.exit(JbotEdgeError.exit_code)
    except JbotEdgeError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except OSError as exc:
        # A path argument longer than the file system allows fails in the first stat() wherever that happens;
        # it is the user's input, not a bug. Every other OSError keeps its traceback.
        if exc.errno != errno.ENAMETOOLONG:
            raise
        typer.echo(f"error: a path is too long for the file system: {shorten(str(exc.filename or ''), 120)}",
                   err=True)
        sys.exit(JbotEdgeError.exit_code)
    if isinstance(code, int) and code:  # typer.Exit(code) inside a command
        sys.exit(code)
