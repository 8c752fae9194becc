"""An exported codelm on the host: load it and sample code from it, one byte at a time.

This is the self loop's entry point: the ``self`` generator asks the current best codelm to
write the next version of its own source. The model arrives as the train stage left it — a
TorchScript module (``model.pt``) and ``model.json`` — so no variant Python is ever imported here.

    lm = ExportedCodeLM.load(Path("runs/.../artifacts"))
    text = lm.complete("def main():\\n", max_new_bytes=200, temperature=0.8, seed=1, stop="\\n\\n")
"""

from __future__ import annotations

import codecs
import importlib.util
import json
import math
import warnings
from pathlib import Path

import torch

from orchestrator.errors import SelfprogError

MODEL_FILE = "model.pt"
META_FILE = "model.json"
SEED_TRAIN = Path(__file__).resolve().parent.parent / "programs" / "codelm" / "train.py"


class CodeLMError(SelfprogError):
    """An exported codelm is missing, malformed, or failed while sampling."""


class ExportedCodeLM:
    """A byte-level language model exported by ``programs/codelm/train.py`` (or a variant)."""

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
        meta_path, model_path = folder / META_FILE, folder / MODEL_FILE
        if not meta_path.is_file() or not model_path.is_file():
            raise CodeLMError(f"{folder} holds no exported codelm ({MODEL_FILE} + {META_FILE})")
        try:
            meta = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CodeLMError(f"{meta_path}: not valid JSON: {exc}") from None
        context = meta.get("context") if isinstance(meta, dict) else None
        if not isinstance(context, int) or isinstance(context, bool) or not 0 < context <= 65536:
            raise CodeLMError(f"{meta_path}: 'context' must be a positive integer, got {context!r}")
        try:
            with warnings.catch_warnings():
                # TorchScript is deprecated upstream but is still the one format that loads
                # with variable-length inputs and without running the variant's Python.
                warnings.simplefilter("ignore", DeprecationWarning)
                module = torch.jit.load(str(model_path), map_location=device)
        except (RuntimeError, ValueError) as exc:
            raise CodeLMError(f"{model_path}: not a loadable TorchScript module: {exc}") from None
        module.eval()
        return cls(module, context, device, folder)

    @torch.no_grad()
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
        if temperature < 0 or math.isnan(temperature):
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        gen = torch.Generator(device=self.device).manual_seed(seed)
        window = list(prompt.encode("utf-8"))[-self.context:] or [ord("\n")]
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        text = ""
        for _ in range(max_new_bytes):
            idx = torch.tensor([window], dtype=torch.long, device=self.device)
            logits = self._logits(idx)
            if temperature == 0:
                nxt = int(logits.argmax())
            else:
                probs = torch.softmax(logits.float() / temperature, dim=-1)
                nxt = int(torch.multinomial(probs, 1, generator=gen))
            window = (window + [nxt])[-self.context:]
            text += decoder.decode(bytes([nxt]))
            if stop and stop in text:
                return text[: text.index(stop)]
        return text + decoder.decode(b"", final=True)

    def _logits(self, idx: torch.Tensor) -> torch.Tensor:
        try:
            out = self.module(idx)
        except RuntimeError as exc:
            raise CodeLMError(f"{self.folder}: the model failed while sampling: {exc}") from None
        if out.dim() != 3 or out.shape[:2] != idx.shape or out.shape[2] != 256:
            raise CodeLMError(f"{self.folder}: logits of shape {tuple(out.shape)}, "
                              f"expected (1, {idx.shape[1]}, 256)")
        return out[0, -1]


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
