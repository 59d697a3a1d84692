"""Where MAMO's masked objectives should pay, and what a staged schedule saves (issue 28); caption negatives against
training longer without them (issue 27). The decisive comparison, on the demo world.

    python benchmarks/masked_modeling.py run --arms recipe_ttm recipe_mamo recipe_staged recipe_plain_long --jobs 2
    python benchmarks/masked_modeling.py equal-time       # scores the checkpoints at the reference arm's time
    python benchmarks/masked_modeling.py summary          # the tables of BENCHMARKS.md, with paired tests and CIs

Every `recipe_*` arm pre-trains the tiny demo model with the package's recipe for one's own captions
(`benchmarks/binding.py`'s base run: plain demo data, "list" and "relation" captions, caption-safe crops, 64 px,
batch 32, lr 1e-3) for 6,000 steps with three rule-based caption negatives per caption, keeping a checkpoint every
750 steps:

- `recipe_ttm`: ITC+ITM+MLM (the reference);
- `recipe_mamo`: all five objectives;
- `recipe_staged`: all five with MIM and MRM from step 4,801 (`masked_modeling_start_step = 4800`: the last 20 %);
- `recipe_plain_long`: ITC+ITM+MLM without caption negatives, for 9,600 steps, about the time `recipe_ttm` takes
  (a step with three negatives costs ~1.6× one without: `benchmarks/staged_schedule_cost.py`).

Each run is scored on the fine-grained binding benchmark at every checkpoint (`binding.benchmark`, the primary metric
of issue 17: ITM 6-way accuracy on the "list" template) and, at its last step, with the three instruments of
`masked_modeling_probes.py` (dense probe, grounding after an identical fine-tune, retrieval R@1 after an identical
fine-tune). `equal-time` then scores, for each arm and seed, the checkpoint whose training time is nearest to the
reference's last step (each arm's time per step measured as the median over its seeds).

One process per run, one thread; rows are appended to `benchmarks/results/masked_modeling.jsonl`, and runs already
there are skipped. Checkpoints are kept in `--runs` (a temporary folder by default) for `equal-time`.
"""

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from binding import NEGATIVES, PRIMARY, TTM, benchmark, train
from seed_grid import load_results, paired_comparison, run_missing

RESULTS = Path(__file__).parent / "results" / "masked_modeling.jsonl"
RECIPE = {**NEGATIVES, "max_steps": 6000, "checkpoint_every": 750}
ARMS = {
    "recipe_ttm": {**RECIPE, "model_config": TTM},
    "recipe_mamo": {**RECIPE, "model_config": {}},
    "recipe_staged": {**RECIPE, "model_config": {"masked_modeling_start_step": 4800}},
    "recipe_plain_long": {"max_steps": 9600, "checkpoint_every": 750, "model_config": TTM},
}
REFERENCE = "recipe_ttm"
PROBE_SEED = 0  # the instruments' fine-tunes draw alike for every arm and seed: the comparison is of checkpoints
DEFAULT_RUNS = Path(tempfile.gettempdir()) / "mamo-masked-modeling-runs"


def run_folder(runs: Path, arm: str, seed: int) -> Path:
    return runs / f"{arm}-seed{seed}"


def binding_curve(model, processor, folder: Path) -> list[dict]:
    """The binding benchmark at every checkpoint of a finished run (loaded into `model`), oldest first."""
    from safetensors.torch import load_model

    from mamo_hf.training import list_checkpoints

    points = []
    for checkpoint in list_checkpoints(folder):
        load_model(model, checkpoint / "model.safetensors", strict=False)
        points.append({"step": int(checkpoint.name.rpartition("-")[2]), **benchmark(model, processor)})
    return points


def probes(folder: Path) -> dict:
    """The three instruments of `masked_modeling_probes.py` on a saved model folder."""
    from masked_modeling_probes import score_checkpoint

    scores = score_checkpoint(folder, seed=PROBE_SEED)
    return {name: scores[name] for name in ("dense_probe", "grounding", "retrieval", "seconds")}


def run_one(arm: str, seed: int, runs: Path) -> dict:
    import torch

    torch.set_num_threads(1)
    settings = {**ARMS[arm], "save_total_limit": 0}
    folder = run_folder(runs, arm, seed)
    result = train(settings, seed, str(folder), overwrite_output_dir=True)
    row = {"arm": arm, "seed": seed, "steps": result.summary["steps"], "train_seconds": result.summary["seconds"]}
    row.update(benchmark(result.model, result.processor))
    if settings.get("checkpoint_every"):
        row["curve"] = binding_curve(result.model, result.processor, folder)
        row["probes"] = probes(folder)
    return row


def export_checkpoint(folder: Path, step: int, destination: Path) -> Path:
    """A model folder (config, weights, processor) of the run's checkpoint of `step`, for the instruments."""
    from safetensors.torch import load_model

    from mamo_hf import MamoForPreTraining, MamoProcessor

    model = MamoForPreTraining.from_pretrained(folder)
    load_model(model, folder / f"checkpoint-{step}" / "model.safetensors", strict=False)
    model.save_pretrained(destination)
    MamoProcessor.from_pretrained(folder).save_pretrained(destination)
    return destination


def seconds_per_step(rows: list[dict], arm: str) -> float:
    return statistics.median(row["train_seconds"] / row["steps"] for row in rows if row["arm"] == arm)


def equal_time(args) -> None:
    """For every arm with checkpoints, score the checkpoint nearest to the reference's time at its last step."""
    import torch

    torch.set_num_threads(1)
    rows = load_results(args.results)
    runs = [row for row in rows if "curve" in row]
    reference_time = seconds_per_step(rows, REFERENCE) * ARMS[REFERENCE]["max_steps"]
    done = {(row["arm"], row["seed"]) for row in rows if row.get("kind") == "equal_time"}
    for row in runs:
        if row["arm"] == REFERENCE or (row["arm"], row["seed"]) in done:
            continue
        per_step = seconds_per_step(rows, row["arm"])
        step = min((point["step"] for point in row["curve"]), key=lambda step: abs(step * per_step - reference_time))
        with tempfile.TemporaryDirectory() as exported:
            folder = export_checkpoint(run_folder(args.runs, row["arm"], row["seed"]), step, Path(exported))
            scored = probes(folder)
        point = next(point for point in row["curve"] if point["step"] == step)
        entry = {"kind": "equal_time", "arm": row["arm"], "seed": row["seed"], "step": step, "probes": scored}
        entry |= {"seconds": round(step * per_step, 1), "reference_seconds": round(reference_time, 1), **point}
        with args.results.open("a") as handle:
            handle.write(json.dumps(entry) + "\n")
        print(f"{row['arm']} seed {row['seed']}: step {step} at {entry['seconds']:.0f} s", flush=True)


# What `summary` reports of each run: the binding benchmark and the three instruments, by name and path in its row.
METRICS = {
    'binding, ITM 6-way "list"': (PRIMARY,),
    "dense probe, colour mIoU": ("probes", "dense_probe", "colour", "miou"),
    "dense probe, shape mIoU": ("probes", "dense_probe", "shape", "miou"),
    "grounding accuracy": ("probes", "grounding", "accuracy"),
    "retrieval ITC text R@1": ("probes", "retrieval", "after", "itc_txt_r1"),
    "retrieval ITM text R@1": ("probes", "retrieval", "after", "itm_txt_r1"),
    "retrieval ITM image R@1": ("probes", "retrieval", "after", "itm_img_r1"),
}


def metric(row: dict, path: tuple[str, ...]) -> float:
    for key in path:
        row = row[key]
    return row


def difference_cell(differences: list[float]) -> str:
    """A paired difference with its interval, or the single seed's difference when there is only one."""
    if len(differences) == 1:
        return f"{differences[0]:+.1f} (1 seed: no interval)"
    paired = paired_comparison(differences)
    low, high = paired["ci95"]
    interval = f"[{low:+.1f}, {high:+.1f}]"
    return f"{paired['mean']:+.1f} {interval} (n={paired['n']}, p={paired['p']:.3f}, ±{paired['detectable']})"


def summarize(args) -> None:
    """Every arm's metrics at equal steps, and at the reference's time, against the reference on the same seeds."""
    rows = load_results(args.results)
    for kind, title in ((None, "equal steps (each arm's last step)"), ("equal_time", "equal training time")):
        chosen = {(row["arm"], row["seed"]): row for row in rows if row.get("kind") == kind and "probes" in row}
        if kind == "equal_time":  # the reference's own last step is its point at its own time
            chosen |= {
                key: row for key, row in {(r["arm"], r["seed"]): r for r in rows}.items() if key[0] == REFERENCE
            }
        arms = sorted({arm for arm, _ in chosen} - {REFERENCE})
        print(f"\n### {title}: Δ against {REFERENCE}, paired [95 % CI] (n, p, detects ±)\n")
        print("| metric | " + " | ".join([REFERENCE, *arms]) + " |")
        print("|---|" + "---|" * (1 + len(arms)))
        for name, path in METRICS.items():
            reference = {seed: metric(row, path) for (arm, seed), row in chosen.items() if arm == REFERENCE}
            cells = [f"{statistics.mean(reference.values()):.1f} (seeds: {len(reference)})" if reference else "—"]
            for arm in arms:
                ours = {seed: metric(row, path) for (other, seed), row in chosen.items() if other == arm}
                common = sorted(set(ours) & set(reference))
                cells.append(difference_cell([ours[seed] - reference[seed] for seed in common]) if common else "—")
            print(f"| {name} | " + " | ".join(cells) + " |")


def run_grid(args) -> None:
    args.runs.mkdir(parents=True, exist_ok=True)
    run_missing(
        __file__,
        "arm",
        args.arms,
        args.seeds,
        args.results,
        args.jobs,
        ["--runs", str(args.runs)],
        lambda row: (
            f"{row['arm']:18s} seed {row['seed']}: {PRIMARY} {row[PRIMARY]:.1f} ({row['train_seconds']:.0f} s)"
        ),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    grid = commands.add_parser("run", help="run every (arm, seed) not yet in the results file")
    grid.add_argument("--arms", nargs="+", required=True, choices=list(ARMS))
    grid.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4, 5])
    grid.add_argument("--jobs", type=int, default=2)
    one = commands.add_parser("one", help="run one (arm, seed) and print its result as JSON")
    one.add_argument("arm", choices=list(ARMS))
    one.add_argument("seed", type=int)
    commands.add_parser("equal-time", help="score the checkpoints at the reference arm's training time")
    commands.add_parser("summary", help="the tables: every metric against the reference, at equal steps and time")
    for command in commands.choices.values():
        command.add_argument("--runs", type=Path, default=DEFAULT_RUNS, help="where the runs' folders are kept")
        command.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.command == "run":
        run_grid(args)
    elif args.command == "one":
        print(json.dumps(run_one(args.arm, args.seed, args.runs)))
    elif args.command == "summary":
        summarize(args)
    else:
        equal_time(args)


if __name__ == "__main__":
    main()
