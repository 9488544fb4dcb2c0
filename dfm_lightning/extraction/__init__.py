"""DfM: turn a trained model plus substitute images into an extracted dataset."""
from dfm_lightning.extraction.extractor import ExtractionConfig, extract
from dfm_lightning.extraction.virtual_logits import VirtualLogits

__all__ = ["ExtractionConfig", "VirtualLogits", "extract"]
