"""Proposals from a program's shipped source, without running anything: what ``selfprog
propose`` prints, to try a backend or a model on a program before an evolve run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from orchestrator.generators.auto import make_generator
from orchestrator.generators.base import GenerationRequest, Parent, Proposal
from orchestrator.generators.config import GeneratorConfig
from orchestrator.program import Program


def preview(program_dir: str | Path, config: GeneratorConfig, n: int = 1, seed: int = 0,
            from_spec: bool = False,
            say: Callable[[str], None] | None = None) -> list[Proposal]:
    """``n`` proposals from the program as shipped (or, with ``from_spec``, written from its
    task spec with no parent).

    Raises:
        ConfigError: the program does not load, or the configured backend cannot start.
    """
    program = Program.load(program_dir)
    generator = make_generator(config, say=say)
    parents = () if from_spec else (Parent("seed", program.source_files()),)
    return generator.propose(GenerationRequest(program, parents, n=n, seed=seed))
