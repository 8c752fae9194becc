"""The evolve loop: selection, slots, the run configuration, and launching a run."""
