"""The generator's configuration: the ``[generator]`` section of an evolve config.

One frozen model per backend, nested under :class:`GeneratorConfig`; a misspelt key is an error.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from orchestrator.generators import BACKENDS, Backend
from orchestrator.toml_model import Frozen

__all__ = ["BACKENDS", "Backend"]


class PromptConfig(Frozen):
    max_failures: int = Field(default=3, ge=0, le=50)
    """Most recent failures shown in a prompt (each with its trimmed error tail)."""
    error_tail_lines: int = Field(default=12, ge=1, le=500)
    """Lines kept from the end of each failure's error text."""
    max_history: int = Field(default=8, ge=0, le=200)
    """Most ancestors whose metric is listed in a prompt (the newest are kept)."""
    max_tried: int = Field(default=6, ge=0, le=100)
    """Most changes already tried from the parent shown with their outcome (newest kept)."""
    diff_lines: int = Field(default=30, ge=1, le=2000)
    """Lines kept of each tried or failed change's diff."""


class ValidationConfig(Frozen):
    max_file_bytes: int = Field(default=200_000, ge=1)
    """Largest editable file a proposal may produce."""
    max_growth: float = Field(default=4.0, gt=1)
    """A file may grow to at most this many times its parent's size (plus 2 KB)."""
    min_rewrite_fraction: float = Field(default=0.3, ge=0, le=1)
    """A full-file rewrite shorter than this fraction of the parent file is taken for a snippet
    (or a truncated answer) and rejected."""


class HFConfig(Frozen):
    model: str | None = None
    """Hub id or local folder of a transformers causal LM. None: the backend is unavailable."""
    device: str = "auto"
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    """Weights' dtype: ``auto`` is bfloat16 on CUDA when supported, float32 on CPU."""
    batch_size: int = Field(default=4, ge=1, le=256)
    """Samples drawn in one ``generate`` call (on CPUs; see ``gpu_batch_size``)."""
    gpu_batch_size: int = Field(default=64, ge=1, le=1024)
    """On CUDA a whole proposal batch is sampled in one ``generate`` call, up to this many."""
    fast_decode: Literal["auto", "on", "off"] = "auto"
    """A static KV cache (prompts padded to a multiple of 64 tokens, so its shapes repeat) with
    the decoding step compiled by transformers: no per-step allocation or Python dispatch.
    ``auto``: on CUDA only (compiling costs seconds once and pays on a GPU); ``off``: the dynamic
    cache, eager."""
    context_tokens: int | None = Field(default=None, ge=64)
    """Context length to fit prompts into; None reads it from the model's config."""


class OpenAIConfig(Frozen):
    base_url: str | None = None
    """Endpoint root, with or without ``/v1`` (``http://127.0.0.1:8000`` or
    ``http://127.0.0.1:8000/v1``). None: ``$OPENAI_BASE_URL``, else the backend is unavailable."""
    model: str | None = None
    """Model name sent with every request. None: ``$OPENAI_MODEL``, else the one model the
    server lists at ``/models`` (several: an error naming them)."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the key; unset or empty sends no Authorization header."""
    stream: bool = True
    """Stream the answer (server-sent events): the read timeout then bounds the silence between
    two chunks, not the whole answer, and the deadline still bounds the call."""
    token_param: Literal["auto", "max_tokens", "max_completion_tokens"] = "auto"
    """Name of the answer-length parameter. ``auto``: ``max_completion_tokens`` on
    api.openai.com, ``max_tokens`` elsewhere, switching once when a server's 400 names the
    other."""
    connect_timeout_s: float = Field(default=10.0, gt=0)
    """Socket connect timeout of one attempt."""
    read_timeout_s: float = Field(default=120.0, gt=0)
    """Longest silence on the socket within one attempt."""
    deadline_s: float = Field(default=300.0, gt=0)
    """Hard limit on one generation call, retries included: a stalled call costs at most this."""
    retries: int = Field(default=2, ge=0, le=10)
    """Further attempts after a connection error, a 429 or a 5xx answer."""
    backoff_s: float = Field(default=1.0, ge=0)
    """Wait before the first retry; doubled for each later one (never past the deadline)."""
    context_tokens: int = Field(default=8192, ge=256)
    """The model's context length, which the prompt is fitted into."""


class BudgetConfig(Frozen):
    tokens: int | None = Field(default=None, ge=1)
    """Stop proposing once the run's generation calls used this many tokens (in + out)."""
    usd: float | None = Field(default=None, gt=0)
    """Stop proposing once the calls cost this much at ``price`` (needs a price)."""


class PriceConfig(Frozen):
    input_per_1m: float = Field(default=0.0, ge=0)
    """Price of one million prompt tokens, in dollars."""
    output_per_1m: float = Field(default=0.0, ge=0)
    """Price of one million answer tokens (reasoning included), in dollars."""

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.input_per_1m + tokens_out * self.output_per_1m) / 1e6


class CodeLMConfig(Frozen):
    model: str | None = None
    """Folder of an exported model (the ``self`` backend): a codelm's (model.pt + model.json) or
    a coder's data-only HF export (safetensors + config.json + tokenizer.json); the evolve loop
    points it at the current best variant's artifacts."""
    max_new_bytes: int = Field(default=1200, ge=16)
    """Longest sample; a region is replaced by at most this many bytes."""
    context_bytes: int = Field(default=2048, ge=64)
    """Most bytes of the source before the cut point given to the model."""
    sandboxed: bool = True
    """Sample in a hardened container (the default). False loads the TorchScript and runs it IN
    THE ORCHESTRATOR PROCESS: the model's code then runs on the host, with the host's files and
    network. Only for a model you made yourself and trust; never for a variant's export."""
    timeout_s: float = Field(default=300, gt=0)
    """Wall-clock deadline of one sampling container (a proposal batch); it is killed after."""
    gpus: tuple[int, ...] = ()
    """Host GPU ids the sampling container gets (the head's GPU, e.g. ``[0]``); its device request
    names these and no other. Empty (the default): the model samples on CPUs."""
    hole_fraction: float = Field(default=0.5, ge=0, le=1)
    """Share of proposals that are *setting holes*: the model writes the value of one declared
    ``# search:`` setting, chosen among the declared range's candidates by its likelihood (valid
    by construction). The rest are *code completions* of a block. A program with no declared
    setting (or no block) gets only the other kind."""
    completion: Literal["expression", "block"] = "expression"
    """What a code completion rewrites. ``expression``: the value of one arithmetic statement
    inside a function (``x = ...``, ``return ...``), written byte by byte under a grammar that
    admits only whole expressions over names defined there (``sandbox.pyexpr``), so every
    sample is valid Python; ``block``: the rest of a top-level block, line by line, kept only
    while it can still parse (a weak model's block seldom survives the checks)."""
    candidates: int = Field(default=4, ge=1, le=32)
    """Completions sampled per code-completion proposal; the one that parses, uses no undefined
    name and has the highest log-probability under the model is proposed."""
    hole_grid: int = Field(default=12, ge=2, le=64)
    """Candidate values scored for a numeric setting (log-spaced for ``log`` ranges)."""


class MutateConfig(Frozen):
    max_changes: int = Field(default=3, ge=1, le=20)
    """Most settings changed in one variant (1 to this, fewer more likely)."""
    undeclared: bool = False
    """Also move UPPERCASE numeric constants that declare no ``# search:`` range (halve or
    double them). Off by default: an undeclared constant may be a fixed fact (a vocabulary
    size, a file format), and changing it breaks the program."""
    attempts: int = Field(default=200, ge=1)
    """Draws tried per proposal before giving up on finding an unseen variant."""


class GeneratorConfig(Frozen):
    backend: Backend = "auto"
    """``auto``: openai when an endpoint is set, else hf when its model loads, else mutate."""
    temperature: float = Field(default=0.8, ge=0, le=5)
    """Sampling temperature of the language-model backends (0: greedy)."""
    max_new_tokens: int = Field(default=8192, ge=1)
    """Longest response of the hf and openai backends (reasoning included): room for a whole
    rewritten file of a few thousand tokens plus a reasoning model's thinking. At most half the
    context is ever asked for."""
    prompt: PromptConfig = PromptConfig()
    """What goes into a prompt besides the source."""
    validation: ValidationConfig = ValidationConfig()
    """Limits every proposal must meet before anything is built."""
    hf: HFConfig = HFConfig()
    """The local transformers backend."""
    openai: OpenAIConfig = OpenAIConfig()
    """The OpenAI-compatible endpoint backend."""
    codelm: CodeLMConfig = CodeLMConfig()
    """The ``self`` backend: the program's own exported code LM."""
    mutate: MutateConfig = MutateConfig()
    """The mutation baseline."""
    price: PriceConfig | None = None
    """Prices per million tokens; when set, summaries and reports show the cost."""
    budget: BudgetConfig = BudgetConfig()
    """Token or money limit: the run stops proposing (evaluations in flight finish) when hit."""

    @model_validator(mode="after")
    def _priced(self) -> GeneratorConfig:
        if self.budget.usd is not None and self.price is None:
            raise ValueError("generator.budget.usd needs generator.price (input_per_1m, "
                             "output_per_1m) to count money")
        return self
