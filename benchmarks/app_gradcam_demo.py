"""Which Grad-CAM read-out should `mamo-hf app` show for the demo model? Zero-shot grounding on generated scenes.

The grounding protocol of `examples/grounding.py` (`mamo_hf.evaluation.grounding`: the Grad-CAM heat map of the ITM
score ranks the objects' boxes; accuracy against choosing a box at random) applied to a model pre-trained by
`mamo-hf demo`, which never saw a referring expression: zero-shot grounding. The scenes are
`generated_grounding_samples` at the demo's 64 px, one expression per object ("the red circle", "the large blue
square"). Every read-out (fusion layer × queries, `readout_variants`) is scored on the expressions as generated
("the red circle", the phrases the app's examples use), and, to see whether the demo model grounds better in the form
of its training captions, on the same expressions phrased as those are ("there is a red circle"). The read-out is
chosen on validation scenes (seed + 1) among those of the generated expressions and reported on separate test scenes
(seed + 2), as the example does; every read-out's test accuracy in both phrasings is recorded too, with its standard
error `100 · √(p (1 − p) / n)`.

    mamo-hf demo --output-dir mamo-demo
    python benchmarks/app_gradcam_demo.py mamo-demo   # -> benchmarks/results/app_gradcam_demo.json
"""

import argparse
import json
import math
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from mamo_hf import MamoForImageTextRetrieval, MamoProcessor
from mamo_hf.data.grounding import generated_grounding_samples
from mamo_hf.evaluation.grounding import grounding_accuracy, readout_variants

RESULTS = Path(__file__).parent / "results" / "app_gradcam_demo.json"

# How an expression is put to the model: as generated, or in the form of the demo's captions.
PHRASINGS = {"expression": "{}", "caption": "there is a {}"}


def phrased(samples: list, phrasing: str) -> list:
    """The samples with their expression ("the red circle") rewritten by `PHRASINGS[phrasing]` (its "the" dropped
    for the caption form: "there is a red circle")."""
    template = PHRASINGS[phrasing]
    if template == "{}":
        return samples
    return [replace(sample, text=template.format(sample.text.removeprefix("the "))) for sample in samples]


def standard_error(accuracy: float, count: int) -> float:
    """The binomial standard error of an accuracy in %, in points."""
    share = accuracy / 100
    return 100 * math.sqrt(share * (1 - share) / count)


def score(model, processor, samples: list) -> list[dict]:
    """Every (layer, queries, phrasing) read-out's grounding accuracy on `samples`."""
    rows = []
    for phrasing in PHRASINGS:
        texts = phrased(samples, phrasing)
        for layer, queries in readout_variants(len(model.mamo.fusion_encoder.layers)):
            metrics = grounding_accuracy(model, processor, texts, layer=layer, queries=queries)
            accuracy = metrics["accuracy"]
            row = {"layer": layer, "queries": queries, "phrasing": phrasing, "accuracy": round(accuracy, 2)}
            row |= {"standard_error": round(standard_error(accuracy, metrics["num_samples"]), 2)}
            rows.append(row | {"random_baseline": round(metrics["random_baseline"], 2), "n": metrics["num_samples"]})
            print(f"  layer {layer}, {queries:5s}, {phrasing:10s}: {accuracy:5.1f}% ± {row['standard_error']:.1f}")
    return rows


def _training_summary(model: Path) -> dict:
    """Steps, seconds and zero-shot retrieval R@1 after training, from the `pretraining_summary.json` that
    `mamo-hf demo` writes next to the model ({} without one)."""
    summary = model / "pretraining_summary.json"
    if not summary.is_file():
        return {}
    values = json.loads(summary.read_text())
    after = values["retrieval_after"]
    recall = {f"{head}_{side}_r1": after[head][f"{side}_r1"] for head in ("itc", "itm") for side in ("txt", "img")}
    return {"steps": values["steps"], "seconds": values["seconds"], "retrieval_r1_after": recall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a model saved by mamo-hf demo (its --output-dir)")
    parser.add_argument("--scenes", type=int, default=300, help="scenes per split (default 300: about 750 phrases)")
    parser.add_argument("--seed", type=int, default=0, help="validation scenes of seed + 1, test of seed + 2")
    parser.add_argument("--image-size", type=int, default=64, help="scene side in pixels (the demo's: 64)")
    parser.add_argument("--trained-by", default="mamo-hf demo", help="the command that trained the model, recorded")
    parser.add_argument("--output", default=str(RESULTS), help=f"results file (default {RESULTS})")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = MamoForImageTextRetrieval.from_pretrained(args.model).eval()
    processor = MamoProcessor.from_pretrained(args.model)
    started = time.perf_counter()
    splits = {}
    for name, offset in (("validation", 1), ("test", 2)):
        print(f"{name} scenes (seed {args.seed + offset}):", flush=True)
        samples = generated_grounding_samples(args.scenes, seed=args.seed + offset, image_size=args.image_size)
        splits[name] = score(model, processor, samples)
    candidates = [index for index, row in enumerate(splits["validation"]) if row["phrasing"] == "expression"]
    chosen = splits["test"][max(candidates, key=lambda index: splits["validation"][index]["accuracy"])]
    print(f"chosen on validation: {chosen}")
    results = {
        "command": shlex.join(["python", "benchmarks/app_gradcam_demo.py", *sys.argv[1:]]),
        "model": args.model,
        "model_training": {"command": args.trained_by, **_training_summary(Path(args.model))},
        "protocol": "zero-shot grounding by Grad-CAM of the ITM score (mamo_hf.evaluation.grounding) on "
        f"generated_grounding_samples({args.scenes}, seed, image_size={args.image_size}); read-out chosen on the "
        "validation scenes among those of the generated expressions, reported on the test scenes",
        "chosen": chosen,
        "validation": splits["validation"],
        "test": splits["test"],
        "seconds": round(time.perf_counter() - started),
    }
    Path(args.output).write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
