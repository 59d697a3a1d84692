"""Does drawing caption hard negatives slow pre-training? The generator's and the collator's cost against the step.

Measured in one process, one thread, interleaved over `--rounds`:

- the generator (`CaptionNegatives(k)`) on demo captions and on English captions of COCO's style: microseconds per
  caption;
- the collator on a batch of 32 demo pairs with and without negatives (tokenising the negatives included);
- the pre-training step (forward, backward, AdamW, teacher update) of the demo's tiny model on that batch, without
  and with the negatives (three more captions per pair through the text encoder, one more ITM view per image).

    python benchmarks/caption_negatives_speed.py --rounds 5 --output benchmarks/results/caption_negatives_speed.json
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from mamo_hf import JointMasking, MamoForPreTraining
from mamo_hf.data import CaptionNegatives, DemoCaptionDataset, PretrainingCollator, tiny_config_and_processor

ENGLISH = [
    "A man riding a brown horse next to two white dogs on the beach.",
    "Two young children sitting on a wooden bench in front of a red brick building.",
    "A black cat sleeping on top of a laptop on a desk.",
    "A large white airplane flying above a green field under a blue sky.",
    "A woman holding a pink umbrella while walking her small dog in the rain.",
    "Three zebras standing behind a metal fence near a tall tree.",
    "A plate with a sandwich and an apple next to a glass of orange juice.",
    "A red double decker bus driving down a street past a stone church.",
]


def seconds_per_call(function, repeats: int) -> float:
    started = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - started) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)

    negatives = CaptionNegatives(args.k)
    config, processor = tiny_config_and_processor(64, 16)
    dataset = DemoCaptionDataset(args.batch_size, image_size=64, templates=("list", "relation"))
    items = [dataset[index] for index in range(args.batch_size)]
    demo_captions = [item["caption"] for item in items]
    plain = PretrainingCollator(processor, masking=JointMasking.from_config(config))
    with_negatives = PretrainingCollator(processor, masking=JointMasking.from_config(config), negatives=negatives)
    torch.manual_seed(0)
    model = MamoForPreTraining(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batches = {"plain": plain(items), "negatives": with_negatives(items)}

    def step(batch):
        loss = model(**batch, generator=torch.Generator().manual_seed(0)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        model.update_teacher()

    times = {name: [] for name in ("demo_us", "english_us", "collate_plain_s", "collate_negatives_s")}
    times |= {"step_plain_s": [], "step_negatives_s": []}
    for _ in range(args.rounds):
        times["demo_us"].append(1e6 * seconds_per_call(lambda: [negatives(c, 1) for c in demo_captions], 20) / 32)
        times["english_us"].append(1e6 * seconds_per_call(lambda: [negatives(c, 1) for c in ENGLISH], 80) / 8)
        times["collate_plain_s"].append(seconds_per_call(lambda: plain(items), 3))
        times["collate_negatives_s"].append(seconds_per_call(lambda: with_negatives(items), 3))
        for name in ("plain", "negatives"):
            times[f"step_{name}_s"].append(seconds_per_call(lambda: step(batches[name]), args.steps))
    medians = {name: statistics.median(values) for name, values in times.items()}
    report = {
        "settings": vars(args) | {"output": str(args.output) if args.output else None},
        "medians": medians,
        "ratios": {
            "step with negatives / step without": medians["step_negatives_s"] / medians["step_plain_s"],
            "collator's extra time / step without": (medians["collate_negatives_s"] - medians["collate_plain_s"])
            / medians["step_plain_s"],
        },
    }
    print(json.dumps(report, indent=2))
    if args.output:
        args.output.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
