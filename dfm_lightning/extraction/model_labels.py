"""``model_labels``: no optimisation - the substitutes themselves with the model's logits.

The Knockoff Nets baseline (Orekondy et al., "Knockoff Nets: Stealing Functionality of Black-Box Models", CVPR
2019): query the model on natural images from another distribution and distil its outputs. Equal to the paper's
method with ``steps: 0``; stores (x_s, Z(x_s)), meant for logit L2 DtM.
"""
from dfm_lightning.extraction.methods import DfMMethod, register_method


@register_method
class ModelLabels(DfMMethod):
    name = "model_labels"
    optimises = False
