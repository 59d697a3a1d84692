"""Score a saved MAMO model on the fine-grained benchmark: each held-out scene against its caption and five hard
negatives that differ only in binding (colours, shapes, sizes or places exchanged between the two objects, or one
object left out), zero-shot by ITM and by ITC. Prints the metrics as JSON (and writes them with `--output`).

    mamo-hf demo --output-dir mamo-demo
    python benchmarks/finegrained.py mamo-demo --image-size 64

The scenes are generated (`mamo_hf.data.finegrained`), the same for the same `--seed`; the default seed is the one
of every number in BENCHMARKS.md, and it lies outside the seeds of the demo's training scenes.
"""

import argparse
import json
import time
from pathlib import Path

import torch
from transformers import AutoConfig, AutoProcessor

import mamo_hf
from mamo_hf.data.finegrained import finegrained_examples
from mamo_hf.evaluation.finegrained import evaluate_finegrained


def load_scoring_model(path: str):
    """The model a folder was saved as (`config.architectures`): a pre-training or retrieval model keeps its ITM
    head, where `AutoModel` would load the bare `MamoModel` without it."""
    architectures = AutoConfig.from_pretrained(path).architectures or ["MamoModel"]
    model_class = getattr(mamo_hf, architectures[0], None)
    if model_class is None:
        raise SystemExit(f"{path} holds a {architectures[0]}, which is not a mamo_hf model.")
    return model_class.from_pretrained(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a folder or Hub id with a MAMO model (any class with ITC and ITM heads)")
    parser.add_argument("--examples", type=int, default=600)
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--image-size", type=int, default=None, help="default: the model's image size")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()

    model = load_scoring_model(args.model)
    processor = AutoProcessor.from_pretrained(args.model)
    image_size = args.image_size or model.config.vision_config.image_size
    examples = finegrained_examples(args.examples, seed=args.seed, image_size=image_size)
    started = time.perf_counter()
    with torch.inference_mode():
        metrics = evaluate_finegrained(model, processor, examples, args.batch_size)
    report = {
        "model": args.model,
        "examples": args.examples,
        "seed": args.seed,
        "seconds": round(time.perf_counter() - started, 1),
        **{name: round(value, 2) for name, value in metrics.items()},
    }
    print(json.dumps(report, indent=2))
    if args.output:
        args.output.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
