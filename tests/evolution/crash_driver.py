"""``selfprog`` with one test hook: a crash-test checkpoint at the start of every image build.

The kill -9 tests run this instead of ``selfprog`` so that ``SELFPROG_PAUSE_AT=build`` stops the
orchestrator inside a build (see orchestrator/checkpoints.py); everything else is the real CLI.
"""

from __future__ import annotations

import sys

from orchestrator.checkpoints import checkpoint
from orchestrator.cli.app import app
from orchestrator.containers import variant_image

_build = variant_image.ImageCache._build


def _paused_build(self, *args, **kwargs):
    checkpoint("build")
    return _build(self, *args, **kwargs)


variant_image.ImageCache._build = _paused_build

if __name__ == "__main__":
    app(sys.argv[1:])
