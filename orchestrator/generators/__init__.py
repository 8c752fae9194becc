"""Code generators: language-model backends, the program itself, and a mutation baseline.

``make_generator(config)`` builds the one a run uses; backends import their heavy dependencies
(torch, transformers) only when chosen.
"""

from orchestrator.generators.auto import choose, make_generator
from orchestrator.generators.base import (
    Failure,
    GenerationCall,
    GenerationRequest,
    Generator,
    Parent,
    Proposal,
    Reason,
    Rejected,
)
from orchestrator.generators.config import GeneratorConfig

__all__ = [
    "Failure", "GenerationCall", "GenerationRequest", "Generator", "GeneratorConfig", "Parent",
    "Proposal", "Reason", "Rejected", "choose", "make_generator",
]
