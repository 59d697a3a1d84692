"""Retrieval evaluation sharded over two processes (run by `torchrun --nproc_per_node 2`, gloo): every rank encodes
and scores its share; rank 0 writes the metrics to the file given as argument."""

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from helpers import exit_distributed_worker  # noqa: E402

from mamo_hf import MamoForImageTextRetrieval
from mamo_hf.data import tiny_config_and_processor
from mamo_hf.data.retrieval import demo_retrieval_split
from mamo_hf.evaluation.retrieval import evaluate_retrieval


def evaluate() -> dict:
    """Metrics of a tiny untrained model on 11 generated images × 3 captions (odd sizes: uneven shards)."""
    config, processor = tiny_config_and_processor()
    torch.manual_seed(0)
    # float64: the ranks encode and score in other batches than one process does, and an untrained model's near-tied
    # scores must not be reordered by float32 rounding
    model = MamoForImageTextRetrieval(config).double().eval()
    split = demo_retrieval_split(11, seed=5, captions_per_image=3, image_size=32)
    return evaluate_retrieval(
        model,
        processor,
        split.images,
        split.texts,
        split.image_to_texts,
        split.text_to_image,
        k=5,
        batch_size=4,
        query_chunk_size=3,
        itm_batch_size=7,
    )


if __name__ == "__main__":
    dist.init_process_group("gloo")
    metrics = evaluate()
    if dist.get_rank() == 0:
        with open(sys.argv[1], "w") as handle:
            json.dump(metrics, handle)
    exit_distributed_worker()
