"""DfM: turn a trained model plus substitute images into an extracted dataset. The methods register themselves on
import (one file each); ``create_method(name)`` builds one."""
from dfm_lightning.extraction import bn_statistics, model_labels, random_target_ce, representation  # noqa: F401 (registers them)
from dfm_lightning.extraction.extractor import ExtractionConfig, extract
from dfm_lightning.extraction.methods import DfMMethod, create_method, list_methods, register_method
from dfm_lightning.extraction.virtual_logits import VirtualLogits

__all__ = ["DfMMethod", "ExtractionConfig", "VirtualLogits", "create_method", "extract", "list_methods",
           "register_method"]
