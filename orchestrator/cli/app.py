"""The ``selfprog`` command line. Each command is a thin wrapper over a library function."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from orchestrator.errors import SelfprogError

app = typer.Typer(
    name="selfprog",
    help="A self-programming AI lab: an LM rewrites ML programs; each variant runs sandboxed.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
protocol_app = typer.Typer(help="The JSON Lines protocol between programs and the orchestrator.")
app.add_typer(protocol_app, name="protocol")
console = Console(stderr=True, soft_wrap=True)


def fail(exc: SelfprogError) -> typer.Exit:
    """Print a selfprog error as one clear line and return the exit to raise."""
    console.print(f"[bold red]error:[/] {exc}", highlight=False)
    return typer.Exit(exc.exit_code)


@app.command()
def doctor() -> None:
    """Check the engine, GPU runtime, images and disk; each line says yes or no, and the fix."""
    from orchestrator.containers.doctor import run_checks

    checks = run_checks()
    for check in checks:
        mark = "[green]yes[/]" if check.ok else "[red]no [/]"
        fix = f"  → {check.fix}" if check.fix else ""
        console.print(f"{mark} {check.name}: {check.detail}{fix}", highlight=False)
    raise typer.Exit(0 if all(c.ok for c in checks) else 1)


@app.command()
def engine() -> None:
    """Make sure a Docker engine answers: install and start one if we are root on Debian."""
    from orchestrator.containers.engine import ensure_engine

    try:
        client = ensure_engine(log=lambda m: console.print(m, highlight=False))
    except SelfprogError as exc:
        raise fail(exc) from None
    console.print(f"Docker engine {client.version().get('Version')} answers.", highlight=False)


@app.command()
def images(
    gpu: Annotated[
        bool | None,
        typer.Option(help="Also build the GPU flavour (default: when the host has NVIDIA GPUs)."),
    ] = None,
    base: Annotated[
        str | None, typer.Option(help="Base image (default: $BASE_IMAGE or python:3.11-slim).")
    ] = None,
) -> None:
    """Build the runtime images that are missing; an unchanged image is not rebuilt."""
    from orchestrator.containers import engine as eng
    from orchestrator.containers.images import ensure_runtime

    say = lambda m: console.print(m, highlight=False)  # noqa: E731
    try:
        client = eng.ensure_engine(log=say)
        flavours = ["cpu"] + (["gpu"] if (gpu if gpu is not None else eng.host_gpus() > 0) else [])
        for flavour in flavours:
            say(f"{flavour} runtime: {ensure_runtime(client, flavour, base, log=say)}")
    except SelfprogError as exc:
        raise fail(exc) from None


@app.command()
def run(
    program_dir: Annotated[Path, typer.Argument(help="A program directory (with program.toml).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the record as JSON.")] = False,
    folder: Annotated[Path | None, typer.Option(help="Where the variant's files go.")] = None,
    seed: Annotated[int, typer.Option(help="SELFPROG_SEED for both stages.")] = 0,
) -> None:
    """Run one program through TRAIN and EVAL in hardened containers; print its result record.

    Exits 0 whenever the orchestrator did its job, whatever the program's status.
    """
    from orchestrator.containers.docker_runner import run_program

    try:
        result = run_program(program_dir, folder, seed)
    except SelfprogError as exc:
        raise fail(exc) from None
    if as_json:
        print(result.model_dump_json(indent=2))
        return
    print_result(result)


def print_result(result) -> None:
    """A result record in a few human lines."""
    colour = "green" if result.status == "ok" else "red"
    console.print(f"variant {result.variant_id}: [{colour}]{result.status}[/]", highlight=False)
    if result.error:
        console.print(f"  error: {result.error}", highlight=False)
    for name, value in result.metrics.items():
        console.print(f"  metric {name} = {value:.6g}", highlight=False)
    if result.telemetry:
        summary = ", ".join(f"{k}={v:.4g}" for k, v in result.telemetry.items())
        console.print(f"  telemetry: {summary}", highlight=False)
    for stage in result.stages:
        peak = f"{stage.peak_memory_bytes / 2**20:.0f} MiB" if stage.peak_memory_bytes else "n/a"
        console.print(f"  {stage.stage}: {stage.status}, exit {stage.exit_code}, "
                      f"{stage.duration_s:.2f} s, peak memory {peak}, "
                      f"{len(stage.violations)} violation(s)", highlight=False)
    console.print(f"  image {result.image}\n  folder {result.folder}", highlight=False)


@app.command("new-task")
def new_task(
    name: Annotated[str, typer.Argument(help="The task's name (lower case, digits, _ . -).")],
    kind: Annotated[str, typer.Option(help="classification or regression.")] = "classification",
    parent: Annotated[Path, typer.Option(help="Folder to create it in.")] = Path("programs/tasks"),
) -> None:
    """Scaffold a task spec (task.toml + a runnable skeleton program) for you to fill in."""
    from orchestrator.task_scaffold import new_task as scaffold

    try:
        root = scaffold(parent, name, kind)  # type: ignore[arg-type]
    except SelfprogError as exc:
        raise fail(exc) from None
    console.print(f"created {root}: fill in task.toml, put data.npz in data/train and "
                  f"data/heldout, then `selfprog run {root}`", highlight=False)


@app.command()
def propose(
    program_dir: Annotated[Path, typer.Argument(help="Program directory (with program.toml).")],
    backend: Annotated[str, typer.Option(help="auto, hf, openai, self or mutate.")] = "auto",
    n: Annotated[int, typer.Option(help="Proposals to draw.")] = 1,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    model: Annotated[str | None, typer.Option(help="hf: hub id or folder; self: export folder; "
                                               "openai: model name.")] = None,
    base_url: Annotated[str | None, typer.Option(help="openai: the endpoint's base URL.")] = None,
    from_spec: Annotated[bool, typer.Option(help="Write from the task spec (no parent).")] = False,
) -> None:
    """Draw proposals from a program's shipped source and print each diff or rejection."""
    from orchestrator.generators.config import GeneratorConfig
    from orchestrator.generators.preview import preview

    data: dict = {"backend": backend}
    if model:
        section = {"hf": "hf", "self": "codelm", "openai": "openai"}.get(backend, "hf")
        data[section] = {"model": model}
    if base_url:
        data["openai"] = {**data.get("openai", {}), "base_url": base_url}
    try:
        proposals = preview(program_dir, GeneratorConfig.model_validate(data), n, seed,
                            from_spec, say=lambda m: console.print(m, highlight=False))
    except SelfprogError as exc:
        raise fail(exc) from None
    for i, p in enumerate(proposals):
        console.print(f"[bold]proposal {i}[/]: {'valid' if p.valid else p.rejection}",
                      highlight=False)
        if p.valid:
            print(p.diff_parent, end="")


@protocol_app.command("schema")
def protocol_schema() -> None:
    """Print the protocol's JSON Schema (generated from the pydantic models)."""
    from sandbox.protocol import json_schema

    print(json.dumps(json_schema(), indent=2))


from orchestrator.cli import evolve as cli_evolve  # noqa: E402,F401

if __name__ == "__main__":
    app()
