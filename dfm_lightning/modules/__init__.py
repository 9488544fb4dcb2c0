"""LightningModules: M0 training (cross-entropy, optional L2 adversarial) and logit-distillation DtM."""
from dfm_lightning.modules.checkpoint import MODULES, checkpoint_info, is_source, load_module, save_module
from dfm_lightning.modules.classifier import Classifier, ImageModel
from dfm_lightning.modules.distill import Distiller

__all__ = ["MODULES", "Classifier", "Distiller", "ImageModel", "checkpoint_info", "is_source", "load_module", "save_module"]
