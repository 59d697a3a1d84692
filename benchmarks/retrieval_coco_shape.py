"""Retrieval evaluation at COCO's shape (5,000 images × 25,000 captions, k = 256): does it stay bounded?

    python benchmarks/retrieval_coco_shape.py                       # tiny model, 64 px, 256 queries each way
    python benchmarks/retrieval_coco_shape.py --images 1000 --queries 128

Encodes the whole corpus with `mamo_hf.evaluation.retrieval.encode_corpus` (generated demo scenes, 5 captions
each; an untrained tiny `MamoForImageTextRetrieval`: the cost does not depend on the weights), then ranks and
ITM-re-ranks `--queries` text-retrieval and `--queries` image-retrieval queries against the full corpus with the
protocol's own ranking code (256 queries' similarities at a time, the top k of each re-scored by ITM), and reports:

- the wall time of the encoding, and of the ranking per 1,000 queries in each direction (the whole test set is
  5,000 image queries and 25,000 text queries: multiply);
- the memory: the size of the stored encoder states (what grows with the corpus), the peak resident set of the
  process, its baseline before the model, and the peak during the ranking above the end of the encoding (what the
  ranking adds: one chunk of similarities and one ITM batch, independent of the corpus size).

Peak resident set is Linux's VmHWM, reset before each phase through /proc/self/clear_refs.
Writes `benchmarks/results/retrieval_coco_shape.json`.
"""

import argparse
import json
import time
from pathlib import Path

import torch

from mamo_hf import MamoForImageTextRetrieval
from mamo_hf.data import tiny_config_and_processor
from mamo_hf.data.retrieval import demo_retrieval_split
from mamo_hf.evaluation.retrieval import encode_corpus, ground_truth_ranks

RESULTS = Path(__file__).parent / "results" / "retrieval_coco_shape.json"
GIB = 1024**3


def resident_gib(field: str) -> float:
    """VmRSS or VmHWM of this process, in GiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024 / GIB
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def states_gib(corpus) -> float:
    tensors = (corpus.image_embeds, corpus.text_embeds, corpus.image_states, corpus.text_states, corpus.text_masks)
    return sum(tensor.numel() * tensor.element_size() for tensor in tensors) / GIB


def seconds_per_thousand(model, corpus, split, queries: int, k: int, images_are_queries: bool) -> float:
    """Rank `queries` queries (text retrieval when `images_are_queries`) against the whole corpus."""
    if images_are_queries:
        query_embeds, candidate_embeds = corpus.image_embeds[:queries], corpus.text_embeds
        positives = split.image_to_texts[:queries]
    else:
        query_embeds, candidate_embeds = corpus.text_embeds[:queries], corpus.image_embeds
        positives = [[image] for image in split.text_to_image[:queries]]
    started = time.perf_counter()
    ground_truth_ranks(model, corpus, query_embeds, candidate_embeds, positives, images_are_queries, k, 256, 128)
    return (time.perf_counter() - started) * 1000 / queries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--captions-per-image", type=int, default=5)
    parser.add_argument("--k", type=int, default=256)
    parser.add_argument("--queries", type=int, default=256, help="queries timed in each direction")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    split = demo_retrieval_split(args.images, seed=0, captions_per_image=args.captions_per_image)
    config, processor = tiny_config_and_processor()
    processor.image_processor.size = {"height": 64, "width": 64}  # 64 px images for a 32 px model (interpolated)
    torch.manual_seed(0)
    model = MamoForImageTextRetrieval(config).eval()
    baseline = resident_gib("VmRSS")

    reset_peak()
    started = time.perf_counter()
    with torch.inference_mode():
        corpus = encode_corpus(model, processor, split.images, split.texts, batch_size=256)
    encode_seconds = time.perf_counter() - started
    after_encoding, encoding_peak = resident_gib("VmRSS"), resident_gib("VmHWM")

    reset_peak()
    with torch.inference_mode():
        text_retrieval = seconds_per_thousand(model, corpus, split, args.queries, args.k, images_are_queries=True)
        image_retrieval = seconds_per_thousand(model, corpus, split, args.queries, args.k, images_are_queries=False)
    ranking_peak = resident_gib("VmHWM")

    report = {
        "command": "python benchmarks/retrieval_coco_shape.py "
        + " ".join(f"--{name.replace('_', '-')} {value}" for name, value in vars(args).items() if name != "output"),
        "images": len(split.images),
        "texts": len(split.texts),
        "k": args.k,
        "encode_seconds": round(encode_seconds, 1),
        "text_retrieval_seconds_per_1k_queries": round(text_retrieval, 1),
        "image_retrieval_seconds_per_1k_queries": round(image_retrieval, 1),
        "whole_test_set_hours_estimate": round(
            (encode_seconds + text_retrieval * len(split.images) / 1000 + image_retrieval * len(split.texts) / 1000)
            / 3600,
            2,
        ),
        "stored_states_gib": round(states_gib(corpus), 3),
        "baseline_gib": round(baseline, 3),
        "peak_during_encoding_gib": round(encoding_peak, 3),
        "resident_after_encoding_gib": round(after_encoding, 3),
        "peak_during_ranking_gib": round(ranking_peak, 3),
        "ranking_adds_gib": round(ranking_peak - after_encoding, 3),
    }
    print(json.dumps(report, indent=2))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
