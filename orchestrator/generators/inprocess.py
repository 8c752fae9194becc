"""An exported codelm: sample code from it, one byte at a time.

This is the self loop's entry point: the ``self`` generator asks the current best codelm to
write the next version of its own source. The model arrives as the train stage left it — a
TorchScript module (``model.pt``) and ``model.json``. TorchScript is code: loading it and running
its ``forward`` can touch files, loop or eat memory. So a variant's model is only ever sampled
inside a hardened container (:class:`orchestrator.containers.sampler.ContainerCompleter`);
:class:`ExportedCodeLM` runs the model IN THIS PROCESS and is for models you trust (tests,
:func:`export_tiny`, a model you trained yourself). The loader and sampler themselves live in
``sandbox.codelm`` so the container runs the same code.

    lm = ExportedCodeLM.load(Path("my-trusted-export"))
    text = lm.complete("def main():\\n", max_new_bytes=200, temperature=0.8, seed=1, stop="\\n\\n")
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch

from orchestrator.errors import CodeLMError
from sandbox import codelm as sampler
from sandbox.codelm import META_FILE, MODEL_FILE

__all__ = ["META_FILE", "MODEL_FILE", "CodeLMError", "ExportedCodeLM", "export_tiny"]
SEED_TRAIN = Path(__file__).resolve().parents[2] / "programs" / "codelm" / "train.py"


class ExportedCodeLM:
    """A byte-level language model exported by ``programs/codelm/train.py``, run in-process.

    Loading and sampling run the model's code on the host: only for models you trust.
    """

    def __init__(self, module: torch.jit.ScriptModule, context: int, device: str, folder: Path):
        self.module = module
        self.context = context
        """Most bytes the model attends to; longer prompts keep their last ``context`` bytes."""
        self.device = device
        self.folder = folder

    @classmethod
    def load(cls, folder: Path, device: str | None = None) -> ExportedCodeLM:
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

    def complete(self, prompt: str, max_new_bytes: int, temperature: float = 0.8, seed: int = 0,
                 stop: str | None = None) -> str:
        """Continue ``prompt`` by sampling up to ``max_new_bytes`` bytes.

        Args:
            prompt: the text to continue (UTF-8); only its last ``context`` bytes are seen.
            max_new_bytes: most bytes to sample.
            temperature: 0 is greedy; higher is more random.
            seed: the same seed, prompt and model give the same text on the same device.
            stop: end early once the completion contains it; the result is cut before it.

        Returns:
            The completion alone (without the prompt). Bytes that do not form valid UTF-8 come
            back as U+FFFD.

        Raises:
            CodeLMError: the module fails or returns logits of the wrong shape.
        """
        try:
            return sampler.sample(self.module, self.context, self.device, prompt, max_new_bytes,
                                  temperature, seed, stop)
        except sampler.SampleError as exc:
            raise CodeLMError(f"{self.folder}: {exc}") from None


def export_tiny(folder: Path, seed: int = 0, context: int = 32) -> Path:
    """Export a tiny random-weight codelm to ``folder`` (for tests: no training, under a second).

    It uses the seed program's own model code, so it has exactly the shipped export format.

    Returns:
        ``folder``, now holding ``model.pt`` and ``model.json``.
    """
    spec = importlib.util.spec_from_file_location("_codelm_seed_train", SEED_TRAIN)
    assert spec and spec.loader
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    torch.manual_seed(seed)
    model = train.GPT(n_layer=1, n_head=2, head_dim=8, mlp_ratio=2, context=context,
                      activation="gelu", dropout=0.0).eval()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.jit.script(model).save(str(folder / MODEL_FILE))
    meta = {"format": "codelm-bytes-v1", "context": context, "vocab": 256,
            "params": sum(p.numel() for p in model.parameters()), "random_weights": True}
    (folder / META_FILE).write_text(json.dumps(meta, indent=1))
    return folder
