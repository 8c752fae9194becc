"""selfprog's stand-in for the parts of OpenEvolve an evaluator imports (``EvaluationResult``)."""

from openevolve.evaluation_result import EvaluationResult

__all__ = ["EvaluationResult"]
