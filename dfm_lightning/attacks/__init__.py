"""The single L2-PGD used for adversarial training, robustness evaluation and DfM extraction."""
from dfm_lightning.attacks.pgd import cross_entropy_per_sample, l2_pgd

__all__ = ["cross_entropy_per_sample", "l2_pgd"]
