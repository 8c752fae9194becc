"""``selfprog export``: a run's records in other tools' formats (MLflow)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.common import RunArg, RunsDir, say


def mlflow(run: RunArg, runs_dir: RunsDir = Path("runs"),
           tracking_uri: Annotated[str | None, typer.Option(
               help="MLflow tracking URI; default: sqlite:///RUN/mlflow.db in the run folder."
           )] = None) -> None:
    """Log a run to MLflow: one MLflow run per variant (params, metrics, status, diffs, logs).
    Running it again logs only variants not logged yet."""
    from orchestrator.evolution.launch import find_run
    from orchestrator.program import Program
    from orchestrator.runs.mlflow_export import export_run
    from orchestrator.runs.store import Store

    folder = find_run(run, runs_dir)
    store = Store(folder)
    try:
        program = Program.load(store.run_info()["program"])
    finally:
        store.close()
    done = export_run(folder, program, tracking_uri)
    say(f"logged {done.logged} variant(s) ({done.already} were already there, "
        f"{done.unsettled} not settled yet) to experiment {done.experiment!r}")
    print(f"{done.uri}\t{done.experiment_id}\t{done.experiment}")
