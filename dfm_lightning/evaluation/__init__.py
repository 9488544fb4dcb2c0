"""Evaluation on the origin test set: clean accuracy and the paper's Table 2 L2-PGD sweep."""
from dfm_lightning.evaluation.robustness import Robustness, RobustnessEval, evaluate_robustness, format_table

__all__ = ["Robustness", "RobustnessEval", "evaluate_robustness", "format_table"]
