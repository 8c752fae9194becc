"""What every command shares: the console, the one map from errors to exit codes, logging.

Library code logs with stdlib ``logging`` and raises :class:`~orchestrator.errors.SelfprogError`;
this module decides how both look. Messages go to stderr, data (JSON, diffs, sources) to stdout.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer
from rich.console import Console

from orchestrator.errors import SelfprogError

console = Console(stderr=True, soft_wrap=True)
"""Messages, progress and errors (stderr)."""

P = ParamSpec("P")
R = TypeVar("R")

out = Console(soft_wrap=True, highlight=False)
"""Data for a pipe or a person: status lines, the lineage tree, a run's result lines (stdout)."""

RunsDir = Annotated[Path | None, typer.Option(
    "--runs-dir", help="Where run folders are (default: the global --runs-dir, else ./runs).")]
RunArg = Annotated[str, typer.Argument(help="Run id (a folder under --runs-dir) or path.")]

_RUNS_DIR: list[Path] = []
"""The global ``selfprog --runs-dir``, when given (set by the app's callback)."""


def set_runs_dir(path: Path | None) -> None:
    """Record the global ``--runs-dir`` (None: not given)."""
    _RUNS_DIR[:] = [path] if path is not None else []


def given_runs_dir(option: Path | None) -> Path | None:
    """The ``--runs-dir`` given: the command's own, else the global one, else None."""
    if option is not None:
        return option
    return _RUNS_DIR[0] if _RUNS_DIR else None


def runs_dir(option: Path | None) -> Path:
    """A command's runs folder: its own ``--runs-dir``, else the global one, else ``runs``."""
    return given_runs_dir(option) or Path("runs")


def say(message: str) -> None:
    """One message line on stderr (rich markup allowed)."""
    console.print(message, highlight=False)


def exits(command: Callable[P, R]) -> Callable[P, R]:
    """Wrap a command so a ``SelfprogError`` becomes one red line and its exit code.

    This is the only place that maps errors to exit codes (each error class carries its own):
    1 for a selfprog error, 5 when a run made no valid proposal at all, 2 for a
    config or manifest error, 3 for the engine or an image, 130 for an interrupted run.
    """

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except SelfprogError as exc:
            say(f"[bold red]error:[/] {exc}")
            raise typer.Exit(exc.exit_code) from None

    return run


class ConsoleHandler(logging.Handler):
    """Library log records as console lines: the message alone, warnings and errors coloured."""

    _STYLE = {logging.WARNING: "yellow", logging.ERROR: "bold red"}

    def emit(self, record: logging.LogRecord) -> None:
        style = next((s for level, s in sorted(self._STYLE.items(), reverse=True)
                      if record.levelno >= level), None)
        console.print(self.format(record), style=style, highlight=False, markup=False)


def setup_logging(level: int = logging.INFO) -> None:
    """Show the ``orchestrator`` loggers' records on the console (one handler, however often
    this is called)."""
    logger = logging.getLogger("orchestrator")
    logger.setLevel(level)
    if not any(isinstance(h, ConsoleHandler) for h in logger.handlers):
        logger.addHandler(ConsoleHandler())
