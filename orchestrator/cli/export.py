"""``selfprog export``: a run's records in other tools' formats (MLflow)."""

from __future__ import annotations

from typing import Annotated

import typer

from orchestrator.cli.common import RunArg, RunsDir, say


def mlflow(run: RunArg, runs_dir: RunsDir = None,
           tracking_uri: Annotated[str | None, typer.Option(
               help="MLflow tracking URI; default: sqlite:///RUN/mlflow.db in the run folder."
           )] = None) -> None:
    """Log a run to MLflow: one MLflow run per variant (params, metrics, status, diffs, logs).
    Running it again logs only variants not logged yet."""
    from orchestrator.cli.runs import open_run_whole
    from orchestrator.runs.mlflow_export import export_run

    store, program = open_run_whole(run, runs_dir)  # the program copied into the run folder
    folder = store.folder
    store.close()
    done = export_run(folder, program, tracking_uri)
    say(f"logged {done.logged} variant(s) ({done.already} were already there, "
        f"{done.unsettled} not settled yet) to experiment {done.experiment!r}")
    print(f"{done.uri}\t{done.experiment_id}\t{done.experiment}")
