"""``selfprog import openevolve|shinka DIR``: a peer's problem as a selfprog program."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.common import say


def import_problem(
    kind: Annotated[str, typer.Argument(help="The problem's format: openevolve or shinka.")],
    src: Annotated[Path, typer.Argument(help="The peer's problem folder (left untouched).")],
    out: Annotated[Path | None, typer.Option(
        "--out", help="The program folder to write (default: programs/imported/NAME).")] = None,
    isolation: Annotated[str, typer.Option(
        help="split (protected), or shared: the peer's own way, labelled NOT protected.")
    ] = "split",
    averaging: Annotated[bool, typer.Option(
        help="Without combined_score, rank by OpenEvolve's mean of the numeric metrics.")
    ] = False,
    checks: Annotated[int, typer.Option(
        min=0, help="Seed runs in each mode for the seed check (split vs the peer's own way).")
    ] = 3,
) -> None:
    """Copy the peer's tree into a program folder, write its program.toml, and check that the
    seed scores the same in split isolation as the peer's own way. Exit 2 with the reason when it
    cannot be run (refused, malformed, or a seed check that differs)."""
    from orchestrator.containers.docker_runner import run_seed
    from orchestrator.peers.importer import import_problem as run_import

    program, check = run_import(kind, src, out, isolation=isolation,  # type: ignore[arg-type]
                                averaging=averaging, checks=checks, runs=run_seed)
    say(f"imported {kind} problem {src} as program {program.name!r} in {program.root}")
    if check.split:
        say(f"seed check: {check.summary()}")
    if isolation == "shared":
        say("[yellow]isolation = shared: the variant runs in the evaluator's process; its scores "
            "are NOT protected[/]")
