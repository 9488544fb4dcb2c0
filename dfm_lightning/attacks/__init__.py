"""The single L2-PGD used for adversarial training, robustness evaluation and DfM extraction."""
from dfm_lightning.attacks.pgd import l2_pgd

__all__ = ["l2_pgd"]
