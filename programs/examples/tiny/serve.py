"""Model side of the split evaluation (trusted, never editable): ``python -m sandbox.serve``.

Loads the exported state dict with ``weights_only=True`` into a 3->1 linear model, one fresh,
restricted worker per request, and answers ``{"x": points}`` with ``{"y": predictions}``.
"""

import os
from pathlib import Path

import torch

from sandbox import remote


def load():
    state = torch.load(Path(os.environ.get("SELFPROG_OUT", "out")) / "model.pt",
                       weights_only=True)
    model = torch.nn.Linear(3, 1)
    model.load_state_dict(state)

    def predict(request):
        with torch.no_grad():
            return {"y": model(torch.from_numpy(request["x"]).float()).numpy()}

    return predict


remote.serve(load)
