"""The shipped data of the auxiliary tasks: how each file in ``programs/tasks/*/data`` was made.

Every task keeps a train and a held-out part as compressed NumPy archives (``x``, ``y``; no
pickles), small enough to live in the repository so that any machine runs the tasks offline:

- digits: the UCI handwritten digits (8x8, 1797 images, as scikit-learn ships them), 80/20.
- diabetes: the Efron et al. diabetes regression data (442 patients, 10 raw features), 80/20.
- sorting: sequences to sort, generated here from a seed (trusted code; the train stage never
  sees the held-out seed's sequences, and no held-out sequence occurs in the train part).

Rebuild with ``python -m tools.taskdata SKLEARN_DATA_DIR`` (the folder holding
``digits.csv.gz``, ``diabetes_data_raw.csv.gz`` and ``diabetes_target.csv.gz``).
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Set as AbstractSet
from pathlib import Path

import numpy as np

TASKS = Path(__file__).resolve().parent.parent / "programs" / "tasks"
SORT_LENGTH, SORT_VOCAB = 10, 16
"""Sorting sequences: this many tokens, each in ``range(SORT_VOCAB)``."""
SORT_TRAIN, SORT_HELDOUT = 20_000, 2_000


def split(x: np.ndarray, y: np.ndarray, heldout: float = 0.2, seed: int = 0):
    """A seeded shuffle, then the last ``heldout`` share is held out."""
    order = np.random.default_rng(seed).permutation(len(x))
    cut = len(x) - int(round(heldout * len(x)))
    return (x[order[:cut]], y[order[:cut]]), (x[order[cut:]], y[order[cut:]])


def sorting(seed: int, n: int,
            exclude: AbstractSet[bytes] = frozenset()) -> tuple[np.ndarray, np.ndarray]:
    """``n`` distinct random sequences (not in ``exclude``) and their sorted versions."""
    rng = np.random.default_rng(seed)
    rows: list[np.ndarray] = []
    seen = set(exclude)
    while len(rows) < n:
        row = rng.integers(0, SORT_VOCAB, SORT_LENGTH, dtype=np.uint8)
        key = row.tobytes()
        if key not in seen:
            seen.add(key)
            rows.append(row)
    x = np.stack(rows)
    return x, np.sort(x, axis=1)


def sorting_parts() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    train = sorting(seed=0, n=SORT_TRAIN)
    heldout = sorting(seed=1, n=SORT_HELDOUT, exclude={r.tobytes() for r in train[0]})
    return train, heldout


def _csv(path: Path, delimiter: str) -> np.ndarray:
    return np.loadtxt(io.StringIO(gzip.decompress(path.read_bytes()).decode()), delimiter=delimiter)


def save(task: str, name: str, train, heldout) -> None:
    for part, (x, y) in (("train", train), ("heldout", heldout)):
        folder = TASKS / task / "data" / part
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"{name}.npz", "wb") as fh:
            np.savez_compressed(fh, x=x, y=y)


def load(folder: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(folder / f"{name}.npz", allow_pickle=False) as arrays:
        return arrays["x"], arrays["y"]


def build_all(sklearn_data: Path) -> None:
    digits = _csv(sklearn_data / "digits.csv.gz", ",")
    save("digits", "digits", *split(digits[:, :64].astype(np.float32),
                                     digits[:, 64].astype(np.int64)))
    feats: np.ndarray = _csv(sklearn_data / "diabetes_data_raw.csv.gz", " ").astype(np.float32)
    target: np.ndarray = _csv(sklearn_data / "diabetes_target.csv.gz", " ").astype(np.float32)
    save("diabetes", "diabetes", *split(feats, target))
    save("sorting", "sorting", *sorting_parts())


if __name__ == "__main__":
    import sys

    build_all(Path(sys.argv[1]))
