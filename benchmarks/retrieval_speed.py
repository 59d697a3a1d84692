"""Retrieval evaluation: the protocol of `mamo_hf.evaluation.retrieval` (encode once, ITC, ITM re-ranking of the
top k) against the brute-force reference (the ITM score of every image-text pair), on the same corpus and model.

    python benchmarks/retrieval_speed.py --images 100 --captions-per-image 5 --k 16

Prints the wall time of both, their ratio, and the number of fusion passes each needs; writes the numbers to
`benchmarks/results/retrieval_speed.json`. Both give the same metrics when k covers the corpus
(tests/evaluation/test_retrieval.py).
"""

import argparse
import json
import time
from pathlib import Path

import torch

from mamo_hf import MamoForImageTextRetrieval
from mamo_hf.data import tiny_config_and_processor
from mamo_hf.data.retrieval import demo_retrieval_split
from mamo_hf.evaluation.retrieval import encode_corpus, itm_scores, recall_metrics, retrieval_metrics


def brute_force(model, corpus, split, batch_size):
    """ITM on every pair, full score matrix, ranks from it (ties counted for the ground truth)."""
    num_images, num_texts = len(split.images), len(split.texts)
    images = torch.arange(num_images).repeat_interleave(num_texts)
    texts = torch.arange(num_texts).repeat(num_images)
    scores = itm_scores(model, corpus, images, texts, batch_size).view(num_images, num_texts)

    def ranks(matrix, positives):
        best = torch.stack([matrix[row, columns].max() for row, columns in enumerate(positives)])
        return (matrix > best[:, None]).sum(dim=1)

    return recall_metrics(ranks(scores, split.image_to_texts), ranks(scores.t(), [[i] for i in split.text_to_image]))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--captions-per-image", type=int, default=5)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    config, processor = tiny_config_and_processor(64, patch_size=16)
    torch.manual_seed(0)
    model = MamoForImageTextRetrieval(config).eval()
    split = demo_retrieval_split(args.images, seed=0, captions_per_image=args.captions_per_image)

    started = time.perf_counter()
    corpus = encode_corpus(model, processor, split.images, split.texts)
    protocol = retrieval_metrics(
        model, corpus, split.image_to_texts, split.text_to_image, k=args.k, itm_batch_size=args.batch_size
    )
    protocol_seconds = time.perf_counter() - started
    started = time.perf_counter()
    corpus = encode_corpus(model, processor, split.images, split.texts)
    brute_force(model, corpus, split, args.batch_size)
    brute_seconds = time.perf_counter() - started

    num_images, num_texts = len(split.images), len(split.texts)
    result = {
        "images": num_images,
        "texts": num_texts,
        "k": args.k,
        "threads": args.threads,
        "protocol_seconds": round(protocol_seconds, 2),
        "brute_force_seconds": round(brute_seconds, 2),
        "speedup": round(brute_seconds / protocol_seconds, 1),
        "protocol_fusion_pairs": (num_images + num_texts) * min(args.k, num_texts),
        "brute_force_fusion_pairs": num_images * num_texts,
        "protocol_itc_r_mean": round(protocol["itc"]["r_mean"], 2),
    }
    print(json.dumps(result, indent=2))
    output = Path(__file__).parent / "results" / "retrieval_speed.json"
    output.parent.mkdir(exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
