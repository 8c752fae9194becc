"""Model side of the split evaluation (trusted, never editable): ``python -m sandbox.serve``.

Serves the exported TorchScript model (``$SELFPROG_OUT/model.pt``) from its own container, one
fresh, Landlock-restricted worker per request; the evaluator (evaluate.py) holds the held-out data,
sends only inputs, and scores what comes back.
"""

from sandbox import remote

remote.serve(remote.torchscript())
