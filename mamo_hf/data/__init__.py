"""MAMO data: pre-training caption datasets (files, Hugging Face datasets, streaming), augmentation, the collator
and the built-in demo data; the downstream tasks' datasets and collators (retrieval, VQA, NLVR2, grounding)."""

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
from .grounding import (
    GroundingCaptionDataset,
    GroundingSample,
    UnambiguousBatchSampler,
    generated_grounding_samples,
    read_refcoco,
    read_refer_targets,
)
from .nlvr2 import CountComparisonDataset, NLVR2Collator, NLVR2Dataset
from .retrieval import RetrievalPairs, RetrievalSplit, demo_retrieval_split, load_retrieval_split
from .vqa import VQACollator, VQADataset, easy_vqa_dataset, tokenizer_from_texts

__all__ = [
    "CaptionDataset",
    "CountComparisonDataset",
    "DemoCaptionDataset",
    "GroundingCaptionDataset",
    "GroundingSample",
    "HFCaptionDataset",
    "NLVR2Collator",
    "NLVR2Dataset",
    "PretrainingCollator",
    "RetrievalPairs",
    "RetrievalSplit",
    "SkippedSample",
    "StreamingCaptionDataset",
    "TrainTransform",
    "UnambiguousBatchSampler",
    "VQACollator",
    "VQADataset",
    "clean_caption",
    "demo_pairs",
    "demo_retrieval_split",
    "demo_tokenizer",
    "easy_vqa_dataset",
    "generated_grounding_samples",
    "load_retrieval_split",
    "read_refcoco",
    "read_refer_targets",
    "tokenizer_from_texts",
    "write_demo_dataset",
]
