"""What a staged schedule saves: the average step cost of MAMO with its masked objectives in the last part of a run.

    python benchmarks/staged_schedule_cost.py --rounds 15      # -> benchmarks/results/staged_schedule_cost.json

Builds the demo model (64 px, batch 32 demo pairs, the demo recipe of `benchmarks/ablation.py`) three times from one
seed: ITC+ITM+MLM (`mim_weight=0, mrm_weight=0`), full MAMO, and MAMO with `masked_modeling_start_step` beyond the
timed steps (the staged schedule before its start: ITC, ITM and MLM, plus the EMA teacher's update). Times their
optimizer steps (forward, backward, AdamW, `update_teacher()`), interleaved round-robin in one process on one thread
after a warm-up, on the same batch with three caption negatives per caption (the recommended recipe's) and without.

A run that starts MIM and MRM at the fraction `s` of its steps costs on average `s · before + (1 − s) · full` per step;
the ratio to the ITC+ITM+MLM step is reported for `s` = 0.8 (the last 20 %, as SigLIP 2) and the other fractions asked.
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from ablation import BASE_RUN, TTM

RESULTS = Path(__file__).parent / "results"
ARMS = {
    "ITC+ITM+MLM": TTM,
    "full MAMO": {},
    "staged, before its start": {"masked_modeling_start_step": 10**9},
}


def models_and_batches() -> tuple[dict, dict]:
    """The three models and the demo batch with and without caption negatives."""
    from mamo_hf.data import CaptionNegatives, DemoCaptionDataset, PretrainingCollator
    from mamo_hf.training import PretrainingArguments
    from mamo_hf.training.model import build_model_and_processor

    models = {}
    for name, config in ARMS.items():
        models[name], processor = build_model_and_processor(
            PretrainingArguments(**{**BASE_RUN, "model_config": config})
        )
    dataset = DemoCaptionDataset(
        BASE_RUN["batch_size"], image_size=BASE_RUN["image_size"], templates=("list", "relation")
    )
    items = [dataset[index] for index in range(len(dataset))]
    batches = {
        "3 caption negatives": PretrainingCollator(processor, 40, negatives=CaptionNegatives(3))(items),
        "no caption negatives": PretrainingCollator(processor, 40)(items),
    }
    return models, batches


def step_seconds(model, batch: dict, optimizer) -> float:
    started = time.perf_counter()
    model(**batch, generator=torch.Generator().manual_seed(0)).loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    model.update_teacher()
    return time.perf_counter() - started


def measure(rounds: int, warmup: int = 3) -> dict:
    torch.set_num_threads(1)
    models, batches = models_and_batches()
    optimizers = {name: torch.optim.AdamW(model.parameters(), lr=1e-4) for name, model in models.items()}
    times = {(arm, data): [] for arm in models for data in batches}
    for round_ in range(warmup + rounds):
        for arm, data in times:
            seconds = step_seconds(models[arm].train(), batches[data], optimizers[arm])
            if round_ >= warmup:
                times[(arm, data)].append(seconds)
    return {data: {arm: statistics.median(times[(arm, data)]) for arm in models} for data in batches}


def averages(medians: dict, starts: list[float]) -> dict:
    """The staged schedule's average step cost against ITC+ITM+MLM's, for each start fraction."""
    reference, full, before = (medians[arm] for arm in ("ITC+ITM+MLM", "full MAMO", "staged, before its start"))
    return {f"start at {start:g}": round((start * before + (1 - start) * full) / reference, 3) for start in starts} | {
        "full MAMO": round(full / reference, 3),
        "staged, before its start": round(before / reference, 3),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--starts", type=float, nargs="+", default=[0.8, 0.5])
    parser.add_argument("--output", type=Path, default=RESULTS / "staged_schedule_cost.json")
    args = parser.parse_args()
    medians = measure(args.rounds)
    result = {
        "command": f"python benchmarks/staged_schedule_cost.py --rounds {args.rounds}",
        "median_step_seconds": {
            data: {arm: round(value, 4) for arm, value in arms.items()} for data, arms in medians.items()
        },
        "ratio_to_itc_itm_mlm": {data: averages(arms, args.starts) for data, arms in medians.items()},
        "rounds": args.rounds,
        "threads": 1,
    }
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
