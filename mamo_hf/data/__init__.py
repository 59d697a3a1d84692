"""MAMO pre-training data: caption datasets (files, Hugging Face datasets, streaming), augmentation, the collator
and the built-in demo data."""

from .datasets import (
    CaptionDataset,
    HFCaptionDataset,
    PretrainingCollator,
    SkippedSample,
    StreamingCaptionDataset,
    TrainTransform,
    clean_caption,
)
from .demo import DemoCaptionDataset, demo_pairs, demo_tokenizer, write_demo_dataset

__all__ = [
    "CaptionDataset",
    "DemoCaptionDataset",
    "HFCaptionDataset",
    "PretrainingCollator",
    "SkippedSample",
    "StreamingCaptionDataset",
    "TrainTransform",
    "clean_caption",
    "demo_pairs",
    "demo_tokenizer",
    "write_demo_dataset",
]
