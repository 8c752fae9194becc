"""Commands that write code without running it: propose, new-task."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.common import say
from orchestrator.generators import BACKENDS


def propose(
    program_dir: Annotated[Path, typer.Argument(help="Program directory (with program.toml).")],
    backend: Annotated[str, typer.Option(help=f"One of {', '.join(BACKENDS)}.")] = "auto",
    n: Annotated[int, typer.Option(help="Proposals to draw.")] = 1,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    model: Annotated[str | None, typer.Option(help="hf: hub id or folder; self: export folder; "
                                               "openai: model name.")] = None,
    base_url: Annotated[str | None, typer.Option(help="openai: the endpoint's base URL.")] = None,
    from_spec: Annotated[bool, typer.Option(help="Write from the task spec (no parent).")] = False,
    whole: Annotated[bool, typer.Option(help="Also print each generation call whole: prompt, "
                                             "raw answer, finish reason, tokens.")] = False,
) -> None:
    """Draw proposals from a program's shipped source and print each diff or rejection."""
    from dataclasses import asdict

    from orchestrator.cli.runs import print_call
    from orchestrator.generators.auto import preview, propose_config

    proposals = preview(program_dir, propose_config(backend, model, base_url), n, seed, from_spec)
    for i, p in enumerate(proposals):
        say(f"[bold]proposal {i}[/]: {'valid' if p.valid else p.rejection}")
        if whole and p.call is not None:
            print_call(asdict(p.call))
        if p.valid:
            print(p.diff_parent, end="")


def new_task(
    name: Annotated[str, typer.Argument(help="The task's name (lower case, digits, _ . -).")],
    kind: Annotated[str, typer.Option(help="classification or regression.")] = "classification",
    parent: Annotated[Path, typer.Option(help="Folder to create it in.")] = Path("programs/tasks"),
) -> None:
    """Scaffold a task spec (task.toml + a runnable skeleton program) for you to fill in."""
    from orchestrator.task_scaffold import new_task as scaffold

    root = scaffold(parent, name, kind)  # type: ignore[arg-type]
    say(f"created {root}: fill in task.toml, put data.npz in data/train and data/heldout, "
        f"then `selfprog run {root}`")
