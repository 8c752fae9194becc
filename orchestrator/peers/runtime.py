"""What the runner does differently for a peer program (docs/peers.md).

* Before any container: the region rule and the peer's ``max_code_length``
  (:func:`refusal`).
* TRAIN runs ``sandbox/peer_train.py`` (trusted): it hands the variant's program file to EVAL.
* EVAL runs ``sandbox/peer_eval.py`` (trusted) with the peers' API shims on its path; it runs the
  peer's evaluator unchanged.
* In split isolation a program server (``sandbox/peer_serve.py``) runs the variant's program in
  its own container beside EVAL, reached only through the socket.
"""

from __future__ import annotations

from orchestrator.outcomes import NOT_PROTECTED as NOT_PROTECTED
from orchestrator.peers import regions
from orchestrator.program import Program

SANDBOX = "/opt/selfprog/sandbox"
TRAIN_SCRIPT = f"{SANDBOX}/peer_train.py"
EVAL_SCRIPT = f"{SANDBOX}/peer_eval.py"
SERVE_SCRIPT = f"{SANDBOX}/peer_serve.py"
SHIMS = f"{SANDBOX}/shims"


def is_peer(program: Program) -> bool:
    return program.manifest.program.format != "native"


def protected(program: Program) -> bool:
    """False for a peer program run with ``isolation = "shared"``."""
    return not is_peer(program) or program.manifest.program.isolation == "split"


def script(program: Program, stage: str) -> str | None:
    """The trusted script a peer program's stage runs instead of its own (None: native)."""
    if not is_peer(program):
        return None
    return TRAIN_SCRIPT if stage == "train" else EVAL_SCRIPT


def env(program: Program, stage: str) -> dict[str, str]:
    if not is_peer(program) or stage != "eval":
        return {}
    return {"PYTHONPATH": f"{SHIMS}:/opt/selfprog",
            "SELFPROG_PEER_ISOLATION": program.manifest.program.isolation}


def serves(program: Program) -> bool:
    """Whether EVAL needs the variant's program server beside it."""
    return is_peer(program) and program.manifest.program.isolation == "split"


def refusal(program: Program, files: dict[str, str]) -> str | None:
    """Why a variant of a peer program is refused before any container (None: it is not)."""
    if not is_peer(program):
        return None
    seed = program.source_files()
    limit = program.manifest.peer.max_code_length
    for path, text in sorted(files.items()):
        if limit is not None and len(text) > limit:
            return f"{path}: {len(text)} characters, over the peer's max_code_length of {limit}"
        if program.manifest.program.regions == "evolve-block" and path in seed:
            why = regions.check(seed[path], text, path)
            if why:
                return f"region rule: {why}"
    return None
