"""A data-only HF export (``programs/coder``) as a :class:`~orchestrator.completer.Completer`,
run in this process: for a model you trust, and for the GPU benchmark (no Docker there).

The default for the ``self`` backend is the sandboxed completer, which runs the same sampler
(:mod:`sandbox.hfsample`) in a hardened container. Loading here is still data-only (the folder is
checked and refused as in the container: no pickle, no remote code), but transformers, torch
and the tokenizer library then parse the variant's bytes in the orchestrator's process.
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.completer import CompletionRequest, ScoreRequest
from orchestrator.errors import CodeLMError
from sandbox.hfexport import ExportError, load
from sandbox.hfsample import BYTES_PER_TOKEN, HFSampler, SampleError


class HFInProcessCompleter:
    """Completions and scores of one export, in-process (CUDA when available)."""

    def __init__(self, sampler: HFSampler, folder: Path):
        self.sampler = sampler
        self.folder = folder
        self.context = sampler.context * BYTES_PER_TOKEN
        """Most bytes the model attends to (its position limit in tokens, times a low guess
        of bytes per token)."""

    @classmethod
    def load(cls, folder: Path, device: str | None = None) -> HFInProcessCompleter:
        """Check and load ``folder``.

        Raises:
            CodeLMError: the folder is refused or does not load.
        """
        import torch

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            return cls(HFSampler(load(Path(folder), device)), Path(folder))
        except ExportError as exc:
            raise CodeLMError(f"refused as a generator: {exc}") from None

    def complete_many(self, requests: list[CompletionRequest]) -> list[str | CodeLMError]:
        out: list[str | CodeLMError] = []
        for r in requests:
            try:
                out.append(self.sampler.complete(r.prompt, r.max_new_bytes, r.temperature,
                                                 r.seed, r.stop, r.constraint))
            except (SampleError, ValueError, RuntimeError) as exc:
                out.append(CodeLMError(f"{self.folder}: {type(exc).__name__}: {exc}"))
        return out

    def score_many(self, requests: list[ScoreRequest]) -> list[list[float] | CodeLMError]:
        out: list[list[float] | CodeLMError] = []
        for r in requests:
            try:
                out.append(self.sampler.score(r.prompt, list(r.continuations)))
            except (SampleError, ValueError, RuntimeError) as exc:
                out.append(CodeLMError(f"{self.folder}: {type(exc).__name__}: {exc}"))
        return out
