"""Data: origin datasets (M0 training and all evaluation), substitute images (DfM input) and extracted shards."""
from dfm_lightning.data.extracted import ExtractedDataModule, ExtractedDataset
from dfm_lightning.data.origin import DATASET_SPECS, OriginDataModule, load_origin
from dfm_lightning.data.substitute import SubstituteDataset

__all__ = ["DATASET_SPECS", "ExtractedDataModule", "ExtractedDataset", "OriginDataModule", "SubstituteDataset", "load_origin"]
