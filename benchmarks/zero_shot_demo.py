"""Zero-shot classification at demo scale: how well does a tiny MAMO name the colour and the shape of new scenes?

    python benchmarks/zero_shot_demo.py        # -> benchmarks/results/zero_shot_demo.json

Trains the model of `tests/test_learning.py` (tiny, 32 px, 500 steps on 2,048 single-object demo scenes, five
objectives, seed 0), then classifies 120 new single-object scenes by colour (6 labels, chance 1/6) and by shape
(4 labels, chance 1/4) with `mamo_hf.evaluation.zero_shot_classify`, for several prompt templates, by ITC alone and
with the top 3 labels re-ranked by ITM.
"""

import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import test_learning  # noqa: E402  (the test's recipe: build, train)

from mamo_hf import MamoImageProcessorPil, MamoProcessor  # noqa: E402
from mamo_hf.data.demo import COLOURS, SHAPES, demo_pairs, demo_tokenizer, draw_scene, random_scene  # noqa: E402
from mamo_hf.evaluation import zero_shot_classify  # noqa: E402

TEMPLATES = ("{}", "a {}", "a large {}")


def main():
    tokenizer = demo_tokenizer()
    processor = MamoProcessor(
        image_processor=MamoImageProcessorPil(size={"height": 32, "width": 32}), tokenizer=tokenizer
    )
    pairs = demo_pairs(2048, seed=1, image_size=32, max_objects=1)
    inputs = dict(
        processor(images=[p[0] for p in pairs], text=[p[1] for p in pairs], padding=True, return_tensors="pt")
    )
    started = time.perf_counter()
    model = test_learning.train(test_learning.build(tokenizer), inputs)
    results = {"training_seconds": round(time.perf_counter() - started, 1), "accuracy": {}}
    rng = random.Random(7)
    scenes = [random_scene(rng, max_objects=1)[0] for _ in range(120)]
    images = [draw_scene([scene], image_size=32) for scene in scenes]
    for attribute, labels in (("colour", list(COLOURS)), ("shape", list(SHAPES))):
        truth = [getattr(scene, attribute) for scene in scenes]
        for template in TEMPLATES:
            for rerank_top_k in (0, 3):
                ranked = zero_shot_classify(
                    model, processor, images, labels, hypothesis_template=template, rerank_top_k=rerank_top_k
                )
                accuracy = sum(result[0]["label"] == label for result, label in zip(ranked, truth)) / len(truth)
                key = f"{attribute} | {template!r} | {'ITM top 3' if rerank_top_k else 'ITC'}"
                results["accuracy"][key] = round(accuracy, 3)
                print(f"{key}: {accuracy:.3f} (chance {1 / len(labels):.3f})", flush=True)
    output = ROOT / "benchmarks" / "results" / "zero_shot_demo.json"
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
