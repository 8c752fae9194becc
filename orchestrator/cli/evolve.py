"""``selfprog evolve``: the options, the live view, and the closing lines.

Exit codes: 0 the run finished its budget; 1 another selfprog error (e.g. no such run, or
another process drives it); 2 a config, manifest or slot plan error (the key is named), or a
changed program on resume; 3 the Docker engine or an image failed; 5 the generator proposed
nothing (or can propose nothing for this program); 130 SIGINT, 143 SIGTERM (the run is
``interrupted``; the message names the ``--resume`` command).

The result lines (best, where the report, diff and summary are) are data: stdout. Progress and
messages: stderr.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from orchestrator.cli.common import RunsDir, console, given_runs_dir, out
from orchestrator.runner import Backend


def evolve(
    config: Annotated[Path | None, typer.Argument(help="TOML config; omitted: the embedded "
                                                  "defaults (programs/codelm, ~15 min).")] = None,
    resume: Annotated[str | None, typer.Option(help="Continue this run (id or folder).")] = None,
    summary_md: Annotated[Path | None, typer.Option(help="Append a markdown summary here "
                                                    "(e.g. $GITHUB_STEP_SUMMARY).")] = None,
    program: Annotated[Path | None, typer.Option(help="Override: program directory.")] = None,
    variants: Annotated[int | None, typer.Option(help="Override: budget.variants.")] = None,
    minutes: Annotated[float | None, typer.Option(help="Override: wall-time budget.")] = None,
    slots: Annotated[int | None, typer.Option(help="Override: slots.count.")] = None,
    generator: Annotated[str | None, typer.Option(help="Override: generator.backend.")] = None,
    run_id: Annotated[str | None, typer.Option(help="Override: the run folder's name.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override any key: "
                                                   "selection.k=3 (repeatable).")] = None,
    live: Annotated[bool, typer.Option(help="Live progress: a table on a terminal, a line per "
                                       "finished evaluation in a log.")] = True,
    backend: Annotated[str | None, typer.Option(
        help="Override: cluster.backend, local or ray (a Ray cluster's nodes; docs/cluster.md)."
    )] = None,
    from_spec: Annotated[bool, typer.Option(
        "--from-spec", help="A task with no reference: the model writes generation 0 from "
        "task.toml (hf or openai backend).")] = False,
    runs_dir: RunsDir = None,
    accept_changed_program: Annotated[bool, typer.Option(
        "--accept-changed-program", help="With --resume: go on although the program's files "
        "changed since the run started (recorded in the run).")] = False,
) -> None:
    """Evolve a program: generate, build, run and select variants until the budget is spent."""
    from orchestrator.cli.live import LineView, LiveView
    from orchestrator.errors import Interrupted
    from orchestrator.evolution.config import parse_override
    from orchestrator.evolution.launch import run_evolution
    from orchestrator.evolution.signals import Stopped, trapped
    from orchestrator.runs.step_summary import StepSummary
    from orchestrator.runs.summary import BEST_DIFF

    named: dict[str, Any] = {
        "program": program, "budget.variants": variants, "slots.count": slots,
        "budget.wall_time_s": minutes * 60 if minutes is not None else None,
        "generator.backend": generator, "run_id": run_id, "from_spec": from_spec or None,
        "cluster.backend": backend}
    named["runs_dir"] = given_runs_dir(runs_dir)
    overrides = {k: (str(v) if isinstance(v, Path) else v) for k, v in named.items()
                 if v is not None}
    overrides.update(parse_override(s) for s in set_ or [])
    view = (LiveView(console) if console.is_terminal else LineView(console)) if live else None
    # The summary is written also when the run fails or is interrupted.
    with StepSummary(summary_md) as step, trapped():
        try:
            where = connect_backend(config, overrides, resume)
            try:
                done = run_evolution(config, overrides, backend=where, resume=resume,
                                     summary_md=step, observer=view,
                                     accept_changed_program=accept_changed_program)
            finally:
                where.close()
        except Stopped as stop:
            raise Interrupted(f"interrupted ({stop.name}) outside the run: nothing to clean up",
                              exit_code=stop.exit_code) from None
    result, s = done.outcome, done.summary
    best = s["best"]
    diff = done.folder / BEST_DIFF
    for line in (f"finished ({result.reason}): best {s['metric']} "
                 f"{best['value'] if best else '—'} ({best['id'] if best else '—'}), seed "
                 f"{s['seed']['value']}, slot use {result.utilisation:.0%}",
                 f"report: {done.report}",
                 f"best diff: {diff}" if diff.is_file() else
                 "best diff: none (no variant beat the seed)",
                 f"summary: {done.folder / 'summary.json'}"):
        out.print(line, markup=False)


def connect_backend(config: Path | None, overrides: dict[str, Any], resume: str | None) -> Backend:
    """The backend the run's config names: the local engine, or a Ray cluster's node agents."""
    from orchestrator.evolution.opening import stored_config

    cluster = stored_config(config, overrides, resume).cluster
    if cluster.backend == "ray":
        from orchestrator.cluster.backend import RayBackend

        return RayBackend.connect(cluster.address, deadline_slack_s=cluster.deadline_slack_s)
    from orchestrator.containers.backend import LocalBackend

    return LocalBackend.connect()
