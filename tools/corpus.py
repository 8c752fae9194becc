"""Building codelm's corpus: Python source, split by file into a train and a held-out part.

The corpus ships in the repository (``programs/codelm/data/{train,heldout}/corpus.txt.xz``), so a
fresh clone, CI and a GPU box without Docker all train on the same bytes. This module is how it
was made, and can remake it from a CPython ``Lib/test`` folder: those files are real, varied
Python and, unlike the rest of the standard library, they are not in the runtime image, so a
variant's container holds no copy of the held-out text.

Deterministic: files are taken in the order of the SHA-256 of their names, assigned to a part by
that same hash, and each part stops at its byte cap. ``corpus.json`` records every file with its
hash and the hash of each part; a test checks the shipped parts against it.
"""

from __future__ import annotations

import hashlib
import json
import lzma
from dataclasses import dataclass
from pathlib import Path

TRAIN_CAP = 3_000_000
"""Bytes of the train part: about one pass of the seed model in a 60 s CPU budget."""
HELDOUT_CAP = 200_000
"""Bytes of the held-out part; the evaluator reads a fixed prefix of it."""
HELDOUT_EVERY = 8
"""One file in this many (by name hash) goes to the held-out part."""
MIN_BYTES, MAX_BYTES = 2_000, 80_000
"""Files outside this size range are left out: stubs say little, giants dominate a part."""
SEPARATOR = b"\n\n"


@dataclass(frozen=True)
class CorpusPart:
    name: str
    """``train`` or ``heldout``."""
    files: tuple[tuple[str, str], ...]
    """(file name, SHA-256 of its bytes), in corpus order."""
    text: bytes
    """The files' bytes joined by a blank line."""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text).hexdigest()


def _name_hash(name: str) -> bytes:
    return hashlib.sha256(name.encode()).digest()


def select(source: Path) -> dict[str, CorpusPart]:
    """Choose and split the files of ``source`` (its top-level ``test_*.py``).

    Returns:
        ``{"train": ..., "heldout": ...}``; no file is in both.
    """
    chosen: dict[str, list[tuple[str, bytes]]] = {"train": [], "heldout": []}
    sizes = {"train": 0, "heldout": 0}
    caps = {"train": TRAIN_CAP, "heldout": HELDOUT_CAP}
    names = sorted((p.name for p in source.glob("test_*.py") if p.is_file()), key=_name_hash)
    for name in names:
        body = (source / name).read_bytes()
        if not MIN_BYTES <= len(body) <= MAX_BYTES or b"\0" in body:
            continue
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            continue
        part = "heldout" if _name_hash(name)[0] % HELDOUT_EVERY == 0 else "train"
        if sizes[part] + len(body) > caps[part]:
            continue
        chosen[part].append((name, body))
        sizes[part] += len(body) + len(SEPARATOR)
    return {
        part: CorpusPart(
            name=part,
            files=tuple((n, hashlib.sha256(b).hexdigest()) for n, b in items),
            text=SEPARATOR.join(b for _, b in items),
        )
        for part, items in chosen.items()
    }


def write(parts: dict[str, CorpusPart], data_dir: Path, source_note: str) -> dict:
    """Write ``DATA/{train,heldout}/corpus.txt.xz`` and ``DATA/corpus.json``; return the record."""
    record: dict = {"source": source_note, "parts": {}}
    for part in parts.values():
        folder = data_dir / part.name
        folder.mkdir(parents=True, exist_ok=True)
        # A fixed preset and no timestamps: the same text always gives the same file.
        (folder / "corpus.txt.xz").write_bytes(lzma.compress(part.text, preset=9))
        record["parts"][part.name] = {
            "bytes": len(part.text),
            "sha256": part.sha256,
            "files": [list(f) for f in part.files],
        }
    (data_dir / "corpus.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


def read_part(folder: Path) -> bytes:
    """The text of one shipped part (the folder holding ``corpus.txt.xz``)."""
    return lzma.decompress((folder / "corpus.txt.xz").read_bytes())


if __name__ == "__main__":
    import sys
    import sysconfig

    src = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(sysconfig.get_paths()["stdlib"]) / "test"
    dest = Path(__file__).resolve().parent.parent / "programs" / "codelm" / "data"
    note = f"CPython {sys.version.split()[0]} Lib/test (top-level test_*.py), {src}"
    rec = write(select(src), dest, note)
    print(json.dumps({k: {"bytes": v["bytes"], "files": len(v["files"]), "sha256": v["sha256"]}
                      for k, v in rec["parts"].items()}, indent=1))
