"""TRAIN stage of a peer program: hand the variant's source to EVAL as its one artifact.

A peer program (OpenEvolve, ShinkaEvolve) has no training step: the variant IS its program file.
This trusted script (never the variant's code) copies that file to ``$SELFPROG_OUT/program.py``,
from where the program server of split isolation loads it.
"""

from __future__ import annotations

import os
import shutil
import sys
import tomllib
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from sandbox import report

    with open("program.toml", "rb") as handle:
        manifest = tomllib.load(handle)
    source = Path(manifest["program"]["entrypoint"])
    out = Path(os.environ.get("SELFPROG_OUT", "/out"))
    shutil.copyfile(source, out / "program.py")
    report.artifact("program.py")
