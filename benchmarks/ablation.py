"""Objective ablation and recipe search: pre-train tiny MAMOs on the demo scenes, then score them zero-shot on the
fine-grained benchmark (`mamo_hf.evaluation.finegrained`) and on held-out demo retrieval.

Each run is one `mamo_hf.training.pretrain` in its own process (one thread, so that two runs share the 2-core
machine without disturbing each other's timing more than the other run does); results are appended to a JSON-lines
file, one line per (variant, seed), and runs already there are skipped, so the grid can be extended with more seeds
or variants later. `summary` prints mean ± std per variant and a paired t-test of every variant against a reference
on the seeds both have.

    python benchmarks/ablation.py run --variants full itc_itm_mlm --seeds 0 1 2 3 4 --jobs 2
    python benchmarks/ablation.py summary --reference itc_itm_mlm

Variants are named settings below; `name@steps=N` trains for N steps instead of the default (used for the
equal-wall-clock comparison), e.g. `itc_itm_mlm@steps=2040`.
"""

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path

from seed_grid import load_results, run_missing

from mamo_hf.cli import DEMO_SETTINGS

RESULTS = Path(__file__).parent / "results" / "ablation.jsonl"
OFF = 0.0

# The recipe of the demo (`mamo-hf demo`: 64 px, batch 32, 1,500 steps, lr 1e-3), without checkpoints and trackers.
# Plain demo scenes unless a variant asks for minimal pairs.
BASE_RUN = {**DEMO_SETTINGS, "demo_minimal_pairs": 0.0, "checkpoint_every": 0, "report_to": []}

# name → MamoConfig overrides (on top of the library defaults) and PretrainingArguments overrides. Only the variants
# that were run (results/ablation.jsonl) are kept; the follow-up experiments of issue 17 are benchmarks/binding.py.
TTM = {"mim_weight": OFF, "mrm_weight": OFF}
VARIANTS = {
    "full": {},
    "itc_itm_mlm": {"model_config": TTM},
    "mp25_itc_itm_mlm": {"demo_minimal_pairs": 0.25, "model_config": TTM},
    # half of the demo data as minimal pairs (hard negatives that differ only in binding in every batch)
    "mp50_full": {"demo_minimal_pairs": 0.5},
    "mp50_itc_itm_mlm": {"demo_minimal_pairs": 0.5, "model_config": TTM},
    "mp50_itc_itm": {"demo_minimal_pairs": 0.5, "model_config": {**TTM, "mlm_weight": OFF}},
    "mp50_itc_itm_mlm_mim": {"demo_minimal_pairs": 0.5, "model_config": {"mrm_weight": OFF}},
    "mp50_itc_itm_mlm_mrm": {"demo_minimal_pairs": 0.5, "model_config": {"mim_weight": OFF}},
    "mp50_full_const_negatives": {"demo_minimal_pairs": 0.5, "model_config": {"itm_negative_gradient": False}},
    "mp50_full_warmup_masked": {"demo_minimal_pairs": 0.5, "model_config": {"masked_modeling_warmup_steps": 500}},
    # all of the demo data as minimal pairs
    "mp_full": {"demo_minimal_pairs": 1.0},
    "mp_itc_itm_mlm": {"demo_minimal_pairs": 1.0, "model_config": TTM},
}

METRICS = ("itm_accuracy", "itc_accuracy", "itm_colour", "itm_shape", "itm_size", "itm_position", "itm_count")


def parse_variant(name: str) -> tuple[str, dict]:
    """`variant[@steps=N]` → (base variant, PretrainingArguments overrides)."""
    base, _, option = name.partition("@")
    if base not in VARIANTS:
        raise SystemExit(f"Unknown variant {base!r}; known: {', '.join(VARIANTS)}")
    settings = {key: value for key, value in VARIANTS[base].items() if key != "model_config"}
    settings["model_config"] = dict(VARIANTS[base].get("model_config", {}))
    if option:
        key, _, value = option.partition("=")
        if key != "steps":
            raise SystemExit(f"Unknown option {option!r} in {name!r}: only @steps=N.")
        settings["max_steps"] = int(value)
    return base, settings


def run_one(variant: str, seed: int, benchmark_size: int) -> dict:
    """Pre-train one model and evaluate it (in this process)."""
    import torch

    from mamo_hf.data.finegrained import finegrained_examples
    from mamo_hf.evaluation.finegrained import evaluate_finegrained
    from mamo_hf.training import PretrainingArguments, pretrain

    torch.set_num_threads(1)
    _, settings = parse_variant(variant)
    with tempfile.TemporaryDirectory() as output_dir:
        arguments = PretrainingArguments(**{**BASE_RUN, **settings, "seed": seed, "output_dir": output_dir})
        result = pretrain(arguments)
    examples = finegrained_examples(benchmark_size, seed=12345, image_size=BASE_RUN["image_size"])
    started = time.perf_counter()
    metrics = evaluate_finegrained(result.model, result.processor, examples)
    retrieval = result.summary["retrieval_after"]
    return {
        "variant": variant,
        "seed": seed,
        "steps": result.summary["steps"],
        "train_seconds": result.summary["seconds"],
        "eval_seconds": round(time.perf_counter() - started, 1),
        **{name: round(value, 2) for name, value in metrics.items()},
        "retrieval_itc_tr_r1": retrieval["itc"]["txt_r1"],
        "retrieval_itc_ir_r1": retrieval["itc"]["img_r1"],
        "retrieval_itm_tr_r1": retrieval["itm"]["txt_r1"],
        "retrieval_itm_ir_r1": retrieval["itm"]["img_r1"],
        "final_losses": {name: round(value, 4) for name, value in result.summary["final_losses"].items()},
        "model_config": settings["model_config"],
    }


def step_time_ratio(variants: list[str], steps: int, rounds: int) -> dict:
    """Seconds per optimizer step (forward, backward, AdamW, teacher update) of each variant at the demo size, one
    thread, measured interleaved in one process: `rounds` alternations of `steps` steps each, median per variant."""
    import torch

    from mamo_hf.data import DemoCaptionDataset, PretrainingCollator
    from mamo_hf.training import PretrainingArguments
    from mamo_hf.training.model import build_model_and_processor

    torch.set_num_threads(1)
    models, batches = {}, None
    for variant in variants:
        _, settings = parse_variant(variant)
        arguments = PretrainingArguments(**{**BASE_RUN, "model_config": settings["model_config"]})
        model, processor = build_model_and_processor(arguments)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        models[variant] = (model.train(), optimizer)
        if batches is None:
            dataset = DemoCaptionDataset(BASE_RUN["batch_size"] * 4, image_size=BASE_RUN["image_size"])
            collate = PretrainingCollator(processor, 40)
            items = [dataset[index] for index in range(len(dataset))]
            batches = [collate(items[i : i + BASE_RUN["batch_size"]]) for i in range(0, len(items), 32)]
    seconds = {variant: [] for variant in variants}
    for _ in range(rounds):
        for variant, (model, optimizer) in models.items():
            started = time.perf_counter()
            for step in range(steps):
                loss = model(**batches[step % len(batches)], generator=torch.Generator().manual_seed(step)).loss
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
                model.update_teacher()
            seconds[variant].append((time.perf_counter() - started) / steps)
    medians = {variant: statistics.median(values) for variant, values in seconds.items()}
    return {"seconds_per_step": medians, "ratio_to_first": {v: medians[v] / medians[variants[0]] for v in variants}}


def run_grid(args) -> None:
    for variant in args.variants:
        parse_variant(variant)  # fail before any work on a bad name
    run_missing(
        __file__,
        "variant",
        args.variants,
        args.seeds,
        args.results,
        args.jobs,
        ["--benchmark-size", str(args.benchmark_size)],
        lambda row: (
            f"{row['variant']:32s} seed {row['seed']}: ITM {row['itm_accuracy']:.1f} "
            f"ITC {row['itc_accuracy']:.1f} ({row['train_seconds']:.0f} s)"
        ),
    )


def paired_t_test(differences: list[float]) -> tuple[float, float]:
    """Two-sided paired t-test of mean(differences) = 0: (t, p). Uses scipy when present, else the t CDF by
    numerical integration."""
    n = len(differences)
    mean, std = statistics.mean(differences), statistics.stdev(differences)
    if std == 0:
        return math.inf if mean else 0.0, 0.0 if mean else 1.0
    t = mean / (std / math.sqrt(n))
    try:
        from scipy import stats

        return t, float(2 * stats.t.sf(abs(t), n - 1))
    except ImportError:
        return t, _t_two_sided_p(abs(t), n - 1)


def _t_two_sided_p(t: float, dof: int, steps: int = 20000) -> float:
    """P(|T| > t) for Student's t with `dof` degrees of freedom (Simpson's rule on the density over [0, t])."""
    density = lambda x: (1 + x * x / dof) ** (-(dof + 1) / 2)  # noqa: E731
    norm = math.gamma((dof + 1) / 2) / (math.sqrt(dof * math.pi) * math.gamma(dof / 2))
    h = t / steps
    area = density(0) + density(t) + sum((4 if i % 2 else 2) * density(i * h) for i in range(1, steps))
    return max(0.0, 1 - 2 * norm * area * h / 3)


def summarize(args) -> None:
    rows = load_results(args.results)
    by_variant: dict[str, dict[int, dict]] = {}
    for row in rows:
        by_variant.setdefault(row["variant"], {})[row["seed"]] = row
    reference = by_variant.get(args.reference, {})
    header = "| variant | seeds | steps | s/run | " + " | ".join(args.metrics) + f" | Δ {args.metrics[0]} vs "
    print(header + f"{args.reference} (paired) |")
    print("|" + "---|" * (5 + len(args.metrics)))
    for variant, runs in by_variant.items():
        cells = []
        for metric in args.metrics:
            values = [run[metric] for run in runs.values()]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.1f} ± {spread:.1f}")
        common = sorted(set(runs) & set(reference))
        comparison = ""
        if variant != args.reference and len(common) > 1:
            differences = [runs[seed][args.metrics[0]] - reference[seed][args.metrics[0]] for seed in common]
            t, p = paired_t_test(differences)
            comparison = f"{statistics.mean(differences):+.1f} (n={len(common)}, t={t:.2f}, p={p:.3f})"
        steps = statistics.mean(run["steps"] for run in runs.values())
        seconds = statistics.median(run["train_seconds"] for run in runs.values())
        seeds = ",".join(str(seed) for seed in sorted(runs))
        print(f"| {variant} | {seeds} | {steps:.0f} | {seconds:.0f} | " + " | ".join(cells) + f" | {comparison} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    grid = commands.add_parser("run", help="run every (variant, seed) not yet in the results file")
    grid.add_argument("--variants", nargs="+", required=True)
    grid.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    grid.add_argument("--jobs", type=int, default=2)
    grid.add_argument("--benchmark-size", type=int, default=600)
    grid.add_argument("--results", type=Path, default=RESULTS)
    one = commands.add_parser("one", help="run one (variant, seed) and print its result as JSON")
    one.add_argument("variant")
    one.add_argument("seed", type=int)
    one.add_argument("--benchmark-size", type=int, default=600)
    summary = commands.add_parser("summary", help="mean ± std per variant, paired t-test against a reference")
    summary.add_argument("--reference", default="itc_itm_mlm")
    summary.add_argument("--metrics", nargs="+", default=list(METRICS))
    summary.add_argument("--results", type=Path, default=RESULTS)
    timing = commands.add_parser("time", help="seconds per step of variants, interleaved in one process")
    timing.add_argument("--variants", nargs="+", default=["full", "itc_itm_mlm"])
    timing.add_argument("--steps", type=int, default=20)
    timing.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if args.command == "time":
        print(json.dumps(step_time_ratio(args.variants, args.steps, args.rounds), indent=2))
    elif args.command == "run":
        run_grid(args)
    elif args.command == "one":
        print(json.dumps(run_one(args.variant, args.seed, args.benchmark_size)))
    else:
        summarize(args)


if __name__ == "__main__":
    main()
