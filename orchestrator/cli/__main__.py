"""``python -m orchestrator.cli``: the same command line as ``selfprog``."""

from orchestrator.cli.app import app

app(prog_name="selfprog")
