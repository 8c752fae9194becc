"""The model server's entrypoint: ``python -m sandbox.serve [SCRIPT]``.

Runs in the model container of a split evaluation (see :mod:`sandbox.remote`). It runs the
program's model-side script (``serve.py`` in the program folder by default), which calls
``remote.serve(load)``; a program without that script gets the default, its
``$SELFPROG_OUT/model.pt`` served as TorchScript (``remote.torchscript()``). Whatever the script
imports before ``serve`` (torch, for a TorchScript model) is imported once, in the supervisor, and
every per-request worker forks with it loaded.
"""

from __future__ import annotations

import os
import runpy
import sys

SCRIPT = "serve.py"
"""The model-side script's conventional name, beside the program's evaluator."""


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        sys.stderr.write("usage: python -m sandbox.serve [SCRIPT]\n")
        return 2
    from sandbox import remote

    if os.environ.get("SELFPROG_STAGE") == "serve" and os.getppid() == 1:
        # the server's own container (its init is our parent): a request's leftovers are
        # swept whole, whatever process group they moved to
        os.environ["SELFPROG_SERVE_SWEEP"] = "1"
    script = argv[0] if argv else SCRIPT
    if os.path.isfile(script):
        runpy.run_path(script, run_name="__main__")
    else:
        remote.serve(remote.torchscript())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
