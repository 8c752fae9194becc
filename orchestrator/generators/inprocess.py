"""The in-process completer: an exported codelm run IN THIS PROCESS, for models you trust.

The ``self`` generator asks the current best codelm to write the next version of its own source.
The model arrives as the train stage left it: a TorchScript module (``model.pt``) and
``model.json``. TorchScript is code: loading it and running its ``forward`` can touch files, loop
or eat memory. So a variant's model is only ever sampled inside a hardened container
(``orchestrator.containers.sampler.SandboxedCompleter``, the default); :class:`InProcessCompleter`
is for models you trust (tests, ``generators.testing.export_tiny``, a model you trained yourself)
and is chosen with ``generator.codelm.sandboxed = false``. The loader and sampler themselves live
in ``sandbox.codelm`` so the container runs the same code.

    lm = InProcessCompleter.load(Path("my-trusted-export"))
    text = lm.complete("def main():\\n", max_new_bytes=200, temperature=0.8, seed=1, stop="\\n\\n")
"""

from __future__ import annotations

from pathlib import Path

import torch

from orchestrator.completer import CompletionRequest, ScoreRequest
from orchestrator.errors import CodeLMError
from sandbox import codelm as sampler
from sandbox.codelm import META_FILE, MODEL_FILE

__all__ = ["META_FILE", "MODEL_FILE", "InProcessCompleter"]


class InProcessCompleter:
    """A byte-level language model exported by ``programs/codelm/train.py``, run in-process: an
    ``orchestrator.completer.Completer``.

    Loading and sampling run the model's code on the host: only for models you trust.
    """

    def __init__(self, module: torch.jit.ScriptModule, context: int, device: str, folder: Path):
        self.module = module
        self.context = context
        """Most bytes the model attends to; longer prompts keep their last ``context`` bytes."""
        self.device = device
        self.folder = folder

    @classmethod
    def load(cls, folder: Path, device: str | None = None) -> InProcessCompleter:
        """Read ``model.pt`` and ``model.json`` from an artifacts folder.

        Args:
            folder: the train stage's output folder.
            device: ``cuda`` or ``cpu``; default CUDA when available.

        Raises:
            CodeLMError: a file is missing, the JSON has no positive integer ``context``, or the
                TorchScript archive cannot be loaded.
        """
        folder = Path(folder)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            module, context = sampler.load(folder, device)
        except sampler.SampleError as exc:
            raise CodeLMError(str(exc)) from None
        return cls(module, context, device, folder)

    def complete_many(self, requests: list[CompletionRequest]) -> list[str | CodeLMError]:
        """Each request's completion, or the error the model gave on it: one failed request
        does not cost the others theirs (as in the sandboxed completer)."""
        out: list[str | CodeLMError] = []
        for r in requests:
            try:
                out.append(self.complete(r.prompt, r.max_new_bytes, r.temperature, r.seed, r.stop,
                                         r.constraint, r.names))
            except CodeLMError as exc:
                out.append(exc)
        return out

    def score_many(self, requests: list[ScoreRequest]) -> list[list[float] | CodeLMError]:
        """Each request's log-probabilities (one per continuation), or the model's error on it."""
        out: list[list[float] | CodeLMError] = []
        for r in requests:
            try:
                out.append(sampler.score(self.module, self.context, self.device, r.prompt,
                                         list(r.continuations)))
            except sampler.SampleError as exc:
                out.append(CodeLMError(f"{self.folder}: {exc}"))
            except (ValueError, RuntimeError) as exc:
                out.append(CodeLMError(f"{self.folder}: {type(exc).__name__}: {exc}"))
        return out

    def complete(self, prompt: str, max_new_bytes: int, temperature: float = 0.8, seed: int = 0,
                 stop: str | None = None, constraint: str | None = None,
                 names: tuple[str, ...] = ()) -> str:
        """Continue ``prompt`` by sampling up to ``max_new_bytes`` bytes.

        Args:
            prompt: the text to continue (UTF-8); only its last ``context`` bytes are seen.
            max_new_bytes: most bytes to sample.
            temperature: 0 is greedy; higher is more random.
            seed: the same seed, prompt and model give the same text on the same device.
            stop: end early once the completion contains it; the result is cut before it.
            constraint: None, ``python-block`` or ``python-expr`` (see
                ``CompletionRequest.constraint``).
            names: the names a ``python-expr`` sample may use.

        Returns:
            The completion alone (without the prompt). Bytes that do not form valid UTF-8 come
            back as U+FFFD.

        Raises:
            CodeLMError: the module fails or returns logits of the wrong shape, the temperature
                is negative, the constraint unknown, or torch fails while sampling (out of
                memory, NaN probabilities).
        """
        try:
            return sampler.sample(self.module, self.context, self.device, prompt, max_new_bytes,
                                  temperature, seed, stop, constraint, names)
        except sampler.SampleError as exc:
            raise CodeLMError(f"{self.folder}: {exc}") from None
        except (ValueError, RuntimeError) as exc:  # a bad temperature; torch's own failures
            raise CodeLMError(f"{self.folder}: {type(exc).__name__}: {exc}") from None
