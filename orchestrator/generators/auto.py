"""Choosing a backend: the factory, ``auto``'s choice with its one-line reason, and the preview.

``auto`` takes ``openai`` when an endpoint is configured, else ``hf`` when its model loads, else
``mutate`` (which needs nothing). The reason names what was found or missing and is logged at
INFO, so a run's log says at its start why it runs the backend it runs. :func:`preview` draws
proposals from a program as shipped without running anything (``selfprog propose``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator.completer import Completer
from orchestrator.errors import CodeLMError, ConfigError
from orchestrator.generators.base import GenerationRequest, Generator, Parent, Proposal
from orchestrator.generators.config import BACKENDS, CodeLMConfig, GeneratorConfig
from orchestrator.program import Program
from orchestrator.toml_model import validate

log = logging.getLogger(__name__)


def _openai(config: GeneratorConfig) -> Generator:
    from orchestrator.generators.openai_compat import OpenAIGenerator

    return OpenAIGenerator(config)


def _hf(config: GeneratorConfig) -> Generator:
    from orchestrator.generators.hf import HFGenerator

    return HFGenerator(config)


def _self(config: GeneratorConfig) -> Generator:
    from orchestrator.generators.selfgen import SelfGenerator

    if not config.codelm.model:
        raise ConfigError("generator.codelm.model is not set (an exported codelm's folder)")
    load = codelm_loader(config.codelm)
    return SelfGenerator(config, load(Path(config.codelm.model)), load)


def _mutate(config: GeneratorConfig) -> Generator:
    from orchestrator.generators.mutate import MutateGenerator

    return MutateGenerator(config.mutate, config.validation)


BUILDERS: dict[str, Callable[[GeneratorConfig], Generator]] = {
    "openai": _openai, "hf": _hf, "self": _self, "mutate": _mutate,
}
"""How each backend of ``config.BACKENDS`` is built, but ``auto``, which picks one of these.
Each imports its heavy dependencies (torch, transformers, Docker) only when it is called."""

_MODEL_SECTION = {"self": "codelm", "openai": "openai"}
"""The config section that ``selfprog propose --model`` sets, by backend; any other backend takes
it as an hf model (the one ``auto`` tries when no endpoint is given)."""


def _build(backend: str, config: GeneratorConfig) -> Generator:
    builder = BUILDERS.get(backend)
    if builder is None:
        raise ConfigError(f"generator.backend {backend!r} is not one of {', '.join(BACKENDS)}")
    return builder(config)


def codelm_loader(codelm: CodeLMConfig) -> Callable[[Path], Completer]:
    """The function that makes a completer for an exported codelm folder, as ``codelm`` says.

    By default the sandboxed completer: the folder is checked on the host and the model only ever
    runs in a hardened container (a codelm's TorchScript, or a coder's data-only HF export, on
    ``codelm.gpus`` when given). With ``codelm.sandboxed`` off the model is loaded into this
    process (trusted models only). The imports are lazy so that choosing ``mutate`` or ``openai``
    needs neither Docker nor torch.
    """

    def load(folder: Path) -> Completer:
        """The completer of ``folder``.

        Raises:
            ConfigError: the folder holds no usable model (what the completer said, verbatim).
        """
        try:
            if codelm.sandboxed:
                from orchestrator.containers.sampler import SandboxedCompleter

                return SandboxedCompleter(folder, timeout_s=codelm.timeout_s, gpu_ids=codelm.gpus)
            if (folder / "config.json").is_file() and not (folder / "model.pt").exists():
                from orchestrator.generators.hfcompleter import HFInProcessCompleter

                return HFInProcessCompleter.load(folder)
            from orchestrator.generators.inprocess import InProcessCompleter

            return InProcessCompleter.load(folder)
        except CodeLMError as exc:
            raise ConfigError(str(exc)) from None

    return load


def choose(config: GeneratorConfig) -> tuple[Generator, str]:
    """The generator ``config`` asks for, and one line saying which it is and why.

    Raises:
        ConfigError: an explicitly named backend cannot start (no model, a bad URL ...), or
            ``auto`` is given an endpoint URL that is not http(s). A missing or unloadable hf
            model is no error for ``auto``: it falls back to ``mutate`` and says why.
    """
    if config.backend != "auto":
        generator = _build(config.backend, config)
        return generator, f"generator: {config.backend} ({_what(generator)}), as configured"
    if config.openai.base_url or os.environ.get("OPENAI_BASE_URL"):
        seen = ("generator.openai.base_url is set" if config.openai.base_url
                else "OPENAI_BASE_URL is set in the environment")
        generator = _build("openai", config)
        return generator, (f"generator: openai ({_what(generator)} at "
                           f"{getattr(generator, 'base_url', '?')}): {seen}")
    if config.hf.model:
        try:
            generator = _build("hf", config)
        except ConfigError as exc:
            why = f"the hf model did not load ({exc})"
        else:
            device = getattr(generator, "device", "?")
            return generator, (f"generator: hf ({config.hf.model} on {device}): no openai "
                               "endpoint is configured and the model loaded")
    else:
        why = "no hf model is configured"
    generator = _build("mutate", config)
    return generator, f"generator: mutate (no language model): no openai endpoint and {why}"


def _what(generator: Generator) -> str:
    if getattr(generator, "name", "") == "openai" and not getattr(generator, "model_name", ""):
        return "the one model the server lists"
    return getattr(generator, "model_name", "") or "no model"


def make_generator(config: GeneratorConfig | None = None) -> Generator:
    """Build the generator of a run, and log at INFO the one line that says why this one.

    Raises:
        ConfigError: as :func:`choose`.
    """
    generator, reason = choose(config or GeneratorConfig())
    log.info("%s", reason)
    return generator


def preview(program_dir: str | Path, config: GeneratorConfig, n: int = 1, seed: int = 0,
            from_spec: bool = False) -> list[Proposal]:
    """``n`` proposals from the program as shipped (or, with ``from_spec``, written from its
    task spec with no parent): what ``selfprog propose`` prints, to try a backend or a model on
    a program before an evolve run. Nothing is built or run.

    Raises:
        ConfigError: the program does not load, or the configured backend cannot start.
    """
    program = Program.load(program_dir)
    generator = make_generator(config)
    parents = () if from_spec else (Parent("seed", program.source_files()),)
    return generator.propose(GenerationRequest(program, parents, n=n, seed=seed))


def propose_config(backend: str, model: str | None, base_url: str | None) -> GeneratorConfig:
    """The generator configuration of ``selfprog propose --backend --model --base-url``.

    ``model`` goes to the backend's own section: an export folder for ``self``, a model name for
    ``openai``, a hub id or folder for ``hf`` (also for ``auto``, which tries hf when no endpoint
    is given, and ``mutate``, which ignores it); ``base_url`` is the openai endpoint's.

    Raises:
        ConfigError: ``backend`` is not one of ``BACKENDS``, or a value is refused.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"backend {backend!r} is not one of {', '.join(BACKENDS)}")
    data: dict[str, Any] = {"backend": backend}
    if model:
        data[_MODEL_SECTION.get(backend, "hf")] = {"model": model}
    if base_url:
        data["openai"] = {**data.get("openai", {}), "base_url": base_url}
    return validate(GeneratorConfig, data, "selfprog propose")
