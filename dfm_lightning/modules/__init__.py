"""LightningModules: M0 training (cross-entropy, optional L2 adversarial) and logit-distillation DtM."""
from dfm_lightning.modules.classifier import Classifier, load_classifier
from dfm_lightning.modules.distill import Distiller

__all__ = ["Classifier", "Distiller", "load_classifier"]
