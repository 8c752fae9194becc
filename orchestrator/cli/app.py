"""The ``selfprog`` command line: one app, every command registered here, by name.

Each command is a thin function in the module of its group (``machine``, ``evolve``, ``runs``,
``generate``), wrapped once by :func:`~orchestrator.cli.common.exits`, the one place where a
``SelfprogError`` becomes its exit code. Dependencies point one way: this module imports the
groups, the groups import ``common``, nothing imports this module but the entry point.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from orchestrator.cli import evolve, export, generate, machine, peers, runs
from orchestrator.cli.common import exits, set_runs_dir, setup_logging

app = typer.Typer(
    name="selfprog",
    help="A self-programming AI lab: an LM rewrites ML programs; each variant runs sandboxed.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
protocol_app = typer.Typer(help="The JSON Lines protocol between programs and the orchestrator.")
app.add_typer(protocol_app, name="protocol")
export_app = typer.Typer(help="A run's records in other tools (MLflow).", no_args_is_help=True)
app.add_typer(export_app, name="export")


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also show debug logs.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors.")] = False,
    runs_dir: Annotated[Path | None, typer.Option(
        "--runs-dir", help="Where run folders are, for every command (default ./runs; a "
        "command's own --runs-dir wins).")] = None,
) -> None:
    """A self-programming AI lab: an LM rewrites ML programs; each variant runs sandboxed."""
    setup_logging(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    set_runs_dir(runs_dir)


def _register(target: typer.Typer, command: Callable[..., Any], name: str | None = None) -> None:
    target.command(name)(exits(command))


for _command in (machine.doctor, machine.engine, machine.images, machine.run, evolve.evolve,
                 runs.status, runs.best, runs.show, runs.lineage, runs.report, runs.gc,
                 generate.propose):
    _register(app, _command)
_register(app, generate.new_task, "new-task")
_register(app, peers.import_problem, "import")
_register(protocol_app, machine.protocol_schema, "schema")
_register(export_app, export.mlflow, "mlflow")

if __name__ == "__main__":
    app()
