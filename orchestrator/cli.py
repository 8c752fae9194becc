"""The ``selfprog`` command line. Each command is a thin wrapper over a library function."""

from __future__ import annotations

import json
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
    from orchestrator.doctor import run_checks

    checks = run_checks()
    for check in checks:
        mark = "[green]yes[/]" if check.ok else "[red]no [/]"
        fix = f"  → {check.fix}" if check.fix else ""
        console.print(f"{mark} {check.name}: {check.detail}{fix}", highlight=False)
    raise typer.Exit(0 if all(c.ok for c in checks) else 1)


@app.command()
def engine() -> None:
    """Make sure a Docker engine answers: install and start one if we are root on Debian."""
    from orchestrator.engine import ensure_engine

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
    from orchestrator import engine as eng
    from orchestrator.images import ensure_runtime

    say = lambda m: console.print(m, highlight=False)  # noqa: E731
    try:
        client = eng.ensure_engine(log=say)
        flavours = ["cpu"] + (["gpu"] if (gpu if gpu is not None else eng.host_gpus() > 0) else [])
        for flavour in flavours:
            say(f"{flavour} runtime: {ensure_runtime(client, flavour, base, log=say)}")
    except SelfprogError as exc:
        raise fail(exc) from None


@protocol_app.command("schema")
def protocol_schema() -> None:
    """Print the protocol's JSON Schema (generated from the pydantic models)."""
    from sandbox.protocol import json_schema

    print(json.dumps(json_schema(), indent=2))


if __name__ == "__main__":
    app()
