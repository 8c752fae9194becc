"""selfprog's host side: trusted code that generates, builds, runs, scores and selects variants."""

__version__ = "0.1.0"
