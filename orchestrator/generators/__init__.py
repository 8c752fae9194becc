"""Code generators: language-model backends, the program itself, and a mutation baseline.

``generators.auto.make_generator(config)`` builds the one a run uses; ``generators.base`` holds
the interface and the records a generator produces. Backends import their heavy dependencies
(torch, transformers) only when chosen.
"""

from typing import Literal, get_args

Backend = Literal["auto", "hf", "openai", "self", "mutate"]
"""The generator backends: the one list. The factory's table, its error messages and the CLI's
help text are derived from it (kept here, light, so the CLI's start-up imports no config)."""
BACKENDS: tuple[str, ...] = get_args(Backend)
