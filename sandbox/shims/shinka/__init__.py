"""selfprog's stand-in for the part of ShinkaEvolve an evaluator imports (``run_shinka_eval``)."""
