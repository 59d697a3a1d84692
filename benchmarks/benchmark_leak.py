"""Benchmark leak audit: which fine-grained benchmark scenes and captions a demo pre-training run shows, augmented.

    python benchmarks/benchmark_leak.py                                   # seeds 0-5, 1,500 and 6,000 steps
    python benchmarks/benchmark_leak.py --seeds 0 --steps 100 --output /tmp/leak.json   # quick check
    PYTHONPATH=/path/to/other/checkout python benchmarks/benchmark_leak.py --label before   # another mamo_hf

No model: the script replays the data of `mamo-hf demo` (`mamo_hf.cli.DEMO_SETTINGS`: 20,000 pairs at 64 px, batch
32, one process, no gradient accumulation) with `--minimal-pairs` (default 0), `--templates` (default list and
relation) and `--max-objects` (default 3), for each `--seeds` value, in the order the training run serves it:
`EpochShuffleSampler` over a `DemoCaptionDataset` with `TrainTransform(64)` (random resized crop, caption-safe, and
the left/right flip with p = 0.5), epoch after epoch, `--batch-size` items per step. Each served item is replayed
without drawing its image: its scene and caption as `DemoCaptionDataset.scene_pair` chooses them, and its flip from
the item's own `random.Random` as `TrainTransform` consumes it (`crop_box`, then one draw against the flip
probability). The replay is checked against the real pipeline on `--verify` items per seed spread over the run: the
served caption must be the replayed one, and the served image must be the replayed scene drawn and passed through
the same transform with the flip forced to the replayed outcome. A mismatch stops the script.

Compared with the benchmark of `benchmarks/finegrained.py` and `benchmarks/binding.py` (600 two-object scenes,
seed 12345, templates list, relation and attribute), counting each benchmark scene or caption once, after the first
1,500 and 6,000 (`--steps`) steps. Scenes, as shown (a flipped item shows the mirrored scene):

- `scene_exact`: a served scene of two objects is the benchmark scene;
- `scene_negatives`: ... is the benchmark scene or the scene of one of its hard negatives (one of colour, shape,
  size and cell exchanged between its two objects);
- `scene_swaps`: ... is the benchmark scene or a variant of it with any of those attributes exchanged;
- `scene_swaps_mirror`: ... or the mirror of one of those;
- `two_of_three_exact`, `two_of_three_negatives`, `two_of_three_swaps`, `two_of_three_swaps_mirror`: the same for
  two of the objects of a served scene of three;
- `any_swaps_mirror`: either of the two `_swaps_mirror` counts.

Captions, per template: `caption_verbatim`, benchmark captions that are word for word (after `clean_caption`) the
caption of a served item, and `negatives_verbatim`, the same for the benchmark's hard-negative captions, per negative
type, out of 600 each. These keys are the script's own, not the package's reservation, so that it measures any
version of `mamo_hf` (`--label` names the version; runs of several labels share the output file). Writes
`benchmarks/results/benchmark_leak.json` (`--output`), each run with its command, and prints a markdown table.
"""

import argparse
import copy
import json
import os
import random
import shlex
import subprocess
import sys
import time
from collections import defaultdict
from itertools import combinations
from pathlib import Path

import numpy as np

import mamo_hf
from mamo_hf.cli import DEMO_SETTINGS
from mamo_hf.data import DemoCaptionDataset, TrainTransform, clean_caption, mirror_caption
from mamo_hf.data.demo import (
    BINDING_ATTRIBUTES,
    demo_scene,
    draw_scene,
    minimal_pair_scene,
    scene_caption,
    swap_attribute,
)
from mamo_hf.data.finegrained import finegrained_examples
from mamo_hf.data.transforms import states_frame
from mamo_hf.training import EpochShuffleSampler

BENCHMARK = {"examples": 600, "seed": 12345, "templates": ("list", "relation", "attribute")}
SCENE_METRICS = ("exact", "negatives", "swaps", "swaps_mirror")
OUTPUT = Path(__file__).parent / "results" / "benchmark_leak.json"


# ---------------------------------------------------------------------------------------------------------------
# Keys: a scene is a tuple of (colour, shape, size, row, column) objects
# ---------------------------------------------------------------------------------------------------------------


def as_objects(scene) -> tuple:
    return tuple((obj.colour, obj.shape, obj.size, obj.row, obj.column) for obj in scene)


def mirrored(objects: tuple) -> tuple:
    """The objects of the horizontally flipped image: column c → 2 − c."""
    return tuple((colour, shape, size, row, 2 - column) for colour, shape, size, row, column in objects)


def swap_key(objects: tuple) -> tuple:
    """The same for a scene and every variant with attributes exchanged between its objects."""
    colours, shapes, sizes, rows, columns = zip(*objects)
    return tuple(sorted(colours)), tuple(sorted(shapes)), tuple(sorted(sizes)), tuple(sorted(zip(rows, columns)))


def scene_keys(objects: tuple) -> dict:
    """The scene's key per metric of `SCENE_METRICS`."""
    return {
        "exact": frozenset(objects),
        "negatives": frozenset(objects),
        "swaps": swap_key(objects),
        "swaps_mirror": min(swap_key(objects), swap_key(mirrored(objects))),
    }


def benchmark() -> tuple[dict, dict, dict]:
    """`(scene index, caption index, negative index)`: per metric, a benchmark scene key → the example indices with
    it; per template, a cleaned caption → the example indices; per template, a cleaned negative → (index, type)s."""
    scenes, captions, negatives = defaultdict(lambda: defaultdict(set)), {}, {}
    for template in BENCHMARK["templates"]:
        examples = finegrained_examples(BENCHMARK["examples"], seed=BENCHMARK["seed"], image_size=8, template=template)
        captions[template], negatives[template] = defaultdict(set), defaultdict(set)
        for index, example in enumerate(examples):
            for metric, key in scene_keys(as_objects(example.scene)).items():
                scenes[metric][key].add(index)
            for attribute in BINDING_ATTRIBUTES:  # the scenes of the hard negatives
                scenes["negatives"][frozenset(as_objects(swap_attribute(list(example.scene), attribute)))].add(index)
            captions[template][clean_caption(example.caption)].add(index)
            for kind, text in example.negatives.items():
                negatives[template][clean_caption(text)].add((index, kind))
    return scenes, captions, negatives


# ---------------------------------------------------------------------------------------------------------------
# The replay
# ---------------------------------------------------------------------------------------------------------------


def demo_dataset(seed: int, args) -> DemoCaptionDataset:
    """The dataset `build_train_dataset` makes for the demo recipe (augmentation and caption-safe crops on)."""
    image_size = DEMO_SETTINGS["image_size"]
    return DemoCaptionDataset(
        DEMO_SETTINGS["demo_pairs"],
        seed=seed,
        image_size=image_size,
        max_objects=args.max_objects,
        transform=TrainTransform(image_size),
        minimal_pairs=args.minimal_pairs,
        templates=tuple(args.templates),
    )


def replayed_scene(dataset: DemoCaptionDataset, index: int) -> list:
    """The scene of `dataset.scene_pair(index)`, without its image."""
    if dataset.minimal_pairs > 0:
        return minimal_pair_scene(dataset.seed, index, dataset.max_objects, dataset.minimal_pairs)
    return demo_scene(dataset.seed, index, dataset.max_objects)


def replayed_flip(dataset: DemoCaptionDataset, epoch: int, index: int, text: str) -> bool:
    """Whether the transform flips item `index` in `epoch`: the draws of `TrainTransform.__call__` on the item's own
    `random.Random` (`mamo_hf.data.records.ItemBuilder`)."""
    transform = dataset.transform
    rng = random.Random(f"{dataset.seed}:{epoch}:{index}")
    side = dataset.image_size
    transform.crop_box(side, side, rng, transform.caption_safe and states_frame(text))
    return rng.random() < transform.flip_probability


def served_order(dataset: DemoCaptionDataset, seed: int, batch_size: int, steps: int):
    """`(epoch, index)` of every item of the first `steps` steps, in the order training serves them."""
    sampler = EpochShuffleSampler(
        len(dataset), seed, batch_size=batch_size, block_size=2 if dataset.minimal_pairs > 0 else 1
    )
    remaining, epoch = steps * batch_size, 0
    while remaining > 0:
        sampler.set_epoch(epoch)
        for index in list(sampler)[:remaining]:
            yield epoch, index
        remaining -= len(sampler)
        epoch += 1


def verify(dataset: DemoCaptionDataset, epoch: int, index: int, scene: list, text: str, flip: bool) -> None:
    """Raise unless the real pipeline serves item `index` of `epoch` as replayed: `scene` with the cleaned caption
    `text`, mirrored or not as `flip` says."""
    dataset.set_epoch(epoch)
    item = dataset[index]
    forced = copy.copy(dataset.transform)
    forced.flip_probability = 1.0 if flip else 0.0
    image, served_text = forced(
        draw_scene(scene, dataset.image_size), text, random.Random(f"{dataset.seed}:{epoch}:{index}")
    )
    if item["caption"] != served_text or not np.array_equal(np.asarray(item["image"]), np.asarray(image)):
        raise RuntimeError(f"seed {dataset.seed}, epoch {epoch}, item {index}: the replay differs from the pipeline.")


def audit_seed(seed: int, args, reference) -> dict:
    """The counts of one seed after each of `args.steps`."""
    scenes, captions, negatives = reference
    dataset = demo_dataset(seed, args)
    served = defaultdict(set)  # metric → benchmark indices (or (index, type)s) seen
    drawn, results = {}, {}
    total = max(args.steps) * args.batch_size
    checked = set(np.linspace(0, total - 1, args.verify, dtype=int).tolist()) if args.verify else set()
    for position, (epoch, index) in enumerate(served_order(dataset, seed, args.batch_size, max(args.steps))):
        if index not in drawn:
            scene = replayed_scene(dataset, index)
            text = clean_caption(scene_caption(scene, dataset.templates, seed, index), dataset.max_words)
            drawn[index] = (scene, text)
        scene, text = drawn[index]
        flip = replayed_flip(dataset, epoch, index, text)
        if position in checked:
            verify(dataset, epoch, index, scene, text, flip)
        objects = mirrored(as_objects(scene)) if flip else as_objects(scene)
        parts = [("scene", objects)] if len(objects) == 2 else []
        parts += [("two_of_three", pair) for pair in combinations(objects, 2)] if len(objects) == 3 else []
        for where, part in parts:
            for metric, key in scene_keys(part).items():
                served[f"{where}_{metric}"] |= scenes[metric].get(key, set())
        shown = mirror_caption(text) if flip else text
        for template in BENCHMARK["templates"]:
            served[f"caption_verbatim_{template}"] |= captions[template].get(shown, set())
            served[f"negatives_verbatim_{template}"] |= negatives[template].get(shown, set())
        if (position + 1) % args.batch_size == 0 and (position + 1) // args.batch_size in args.steps:
            results[(position + 1) // args.batch_size] = counts(served)
    return results


def counts(served: dict) -> dict:
    """Numbers of benchmark scenes and captions seen, per metric (negatives per type)."""
    result = {}
    for where in ("scene", "two_of_three"):
        for metric in SCENE_METRICS:
            result[f"{where}_{metric}"] = len(served[f"{where}_{metric}"])
    result["any_swaps_mirror"] = len(served["scene_swaps_mirror"] | served["two_of_three_swaps_mirror"])
    for template in BENCHMARK["templates"]:
        result[f"caption_verbatim_{template}"] = len(served[f"caption_verbatim_{template}"])
        by_type = defaultdict(int)
        for _, kind in served[f"negatives_verbatim_{template}"]:
            by_type[kind] += 1
        result[f"negatives_verbatim_{template}"] = dict(sorted(by_type.items()))
    return result


# ---------------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------------


def code_version() -> dict:
    """Where the measured `mamo_hf` comes from: its folder and, in a git checkout, the commit and whether the package
    has uncommitted changes."""
    folder = Path(mamo_hf.__file__).resolve().parent.parent
    git = ["git", "-C", str(folder)]
    try:
        commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout
        status = subprocess.run(
            [*git, "status", "--porcelain", "--", "mamo_hf"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return {"folder": str(folder)}
    return {"folder": str(folder), "commit": commit.strip(), "uncommitted_changes": bool(status.strip())}


def ranges(per_seed: dict, steps: list[int]) -> dict:
    """Per step count, the smallest and largest number over the seeds of each metric."""
    summary = {}
    for step in steps:
        rows = [per_seed[seed][step] for seed in per_seed]
        summary[step] = {
            name: [min(row[name] for row in rows), max(row[name] for row in rows)]
            for name, value in rows[0].items()
            if isinstance(value, int)
        }
    return summary


def print_table(label: str, summary: dict) -> None:
    names = list(next(iter(summary.values())))
    print(f"\n{label}: min–max over the seeds, of {BENCHMARK['examples']} benchmark scenes / captions\n")
    print("| steps | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for step, row in summary.items():
        print(f"| {step} | " + " | ".join(f"{row[name][0]}–{row[name][1]}" for name in names) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(6)))
    parser.add_argument("--steps", type=int, nargs="+", default=[1500, 6000])
    parser.add_argument("--batch-size", type=int, default=DEMO_SETTINGS["batch_size"])
    parser.add_argument("--minimal-pairs", type=float, default=0.0)
    parser.add_argument("--templates", nargs="+", default=["list", "relation"])
    parser.add_argument("--max-objects", type=int, default=3)
    parser.add_argument("--verify", type=int, default=200, help="items per seed checked against the real pipeline")
    parser.add_argument("--label", default="current", help="name of this run in the output file")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    args.steps = sorted(set(args.steps))
    started = time.perf_counter()
    reference = benchmark()
    per_seed = {seed: audit_seed(seed, args, reference) for seed in args.seeds}
    pythonpath = os.environ.get("PYTHONPATH")
    run = {
        "command": (f"PYTHONPATH={shlex.quote(pythonpath)} " if pythonpath else "")
        + shlex.join(["python", *sys.argv]),
        "mamo_hf": code_version(),
        "settings": {**{k: v for k, v in vars(args).items() if k not in ("label", "output")}, "benchmark": BENCHMARK},
        "verified_items_per_seed": args.verify,
        "seconds": round(time.perf_counter() - started, 1),
        "per_seed": per_seed,
        "range_over_seeds": ranges(per_seed, args.steps),
    }
    results = json.loads(args.output.read_text()) if args.output.exists() else {"runs": {}}
    results["runs"][args.label] = run
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=1, default=str) + "\n")
    print_table(args.label, run["range_over_seeds"])
    print(f"\n{run['seconds']:.0f} s; written to {args.output} as {args.label!r}.")


if __name__ == "__main__":
    main()
