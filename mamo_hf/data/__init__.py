"""MAMO data: pre-training caption datasets (files, Hugging Face datasets, streaming), augmentation, the collator
and the built-in demo data; the downstream tasks' datasets and collators (retrieval, VQA, NLVR2, grounding)."""

from .captions import CaptionDataset, HFCaptionDataset, MapCaptionDataset
from .collator import PretrainingBatch, PretrainingCollator
from .demo import (
    DemoCaptionDataset,
    demo_pairs,
    demo_tokenizer,
    processor_for_config,
    tiny_config_and_processor,
    write_demo_dataset,
)
from .dense import DENSE_TASKS, dense_probe_scenes, patch_labels
from .files import expand_data_files
from .grounding import (
    GroundingCaptionDataset,
    GroundingSample,
    UnambiguousBatchSampler,
    generated_grounding_samples,
    read_refcoco,
    read_refer_targets,
)
from .negatives import CaptionNegatives
from .nlvr2 import CountComparisonDataset, NLVR2Collator, NLVR2Dataset
from .records import DEFAULT_MAX_IMAGE_PIXELS, CaptionOptions, Pair, SkippedSample, load_image
from .retrieval import RetrievalPairs, RetrievalSplit, demo_retrieval_split, load_retrieval_split
from .shards import shard_format
from .streaming import StreamingCaptionDataset
from .transforms import TrainTransform, clean_caption, mirror_caption, states_frame
from .vqa import VQACollator, VQADataset, easy_vqa_dataset, tokenizer_from_texts

__all__ = [
    "CaptionDataset",
    "CaptionNegatives",
    "CaptionOptions",
    "CountComparisonDataset",
    "DEFAULT_MAX_IMAGE_PIXELS",
    "DENSE_TASKS",
    "DemoCaptionDataset",
    "GroundingCaptionDataset",
    "GroundingSample",
    "HFCaptionDataset",
    "MapCaptionDataset",
    "NLVR2Collator",
    "NLVR2Dataset",
    "Pair",
    "PretrainingBatch",
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
    "dense_probe_scenes",
    "easy_vqa_dataset",
    "expand_data_files",
    "generated_grounding_samples",
    "load_image",
    "load_retrieval_split",
    "mirror_caption",
    "patch_labels",
    "processor_for_config",
    "read_refcoco",
    "read_refer_targets",
    "shard_format",
    "states_frame",
    "tiny_config_and_processor",
    "tokenizer_from_texts",
    "write_demo_dataset",
]
