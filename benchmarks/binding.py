"""Does MAMO learn binding from plain captions? The decisive experiments of issue 17, on the demo world.

Every arm pre-trains a tiny MAMO on plain demo data (no minimal pairs; captions in the "list" and "relation"
templates) with the demo's recipe (64 px, batch 32, 1,500 steps, lr 1e-3), then scores it on the fine-grained
benchmark (`mamo_hf.data.finegrained`: 600 scenes of configurations that training never produces, in the seen "list"
and "relation" templates and the held-out "attribute" template). One process per run, one thread; results are
appended to a JSON-lines file, one line per (arm, seed), and runs already there are skipped.

    python benchmarks/binding.py run --arms ttm_hn mamo_hn --seeds 0 1 2 3 4 5 --jobs 2
    python benchmarks/binding.py summary --reference ttm_hn

Arms (`ARMS`): `ttm` (ITC+ITM+MLM), `mamo` (all five objectives), `*_hn` with three rule-based caption negatives per
caption (`mamo_hf.data.negatives`), `mamo_hn_rrc` with the old random-resized crops instead of caption-safe ones;
`ttm_rrc` (ITC+ITM+MLM on plain data with random-resized crops); `ttm_ft` / `mamo_ft` (E1: after pre-training, one
identical ITC+ITM fine-tune of 300 steps, then the test); `warm_ttm` / `warm_mamo` (E2: 750 steps of ITC+ITM+MLM
shared per seed, then 750 steps of each objective set); `curve_*` (E3: 6,000 steps with caption negatives, scored
every 750 steps from that step's checkpoint; each point also carries its training seconds, `steps` × the run's
step time of the arm's 1,500-step runs, for the curves against wall-clock: `python benchmarks/binding.py plot`);
`mamo_hn_attention_dropout` (issue 20: `mamo_hn` with attention dropout 0.1 in the text and fusion encoders) and
`mamo_hn_repro` (`mamo_hn` again, to check that its committed rows reproduce); `ttm_hn_shuffle` (issue 27: the
default caption-negative families plus word shuffles). Caption negatives at equal wall-clock against more steps
without them: `ttm@steps=N`, with N the steps plain ITC+ITM+MLM takes in `ttm_hn`'s time.

The primary metric, fixed before any run: `list_itm_accuracy`, ITM 6-way accuracy on the "list" template (the true
caption beats its five negatives; chance 1/6 = 16.7 %). `summary` compares arms on the seeds both have with an exact
paired sign-flip permutation test (2^n sign patterns; with 6 seeds the smallest two-sided p is 2/64 = 0.031).
"""

import argparse
import fcntl
import json
import statistics
import tempfile
import time
from pathlib import Path

from seed_grid import load_results, paired_comparison, run_missing

from mamo_hf.cli import DEMO_SETTINGS
from mamo_hf.data.negatives import DEFAULT_FAMILIES

RESULTS = Path(__file__).parent / "results" / "binding.jsonl"
OFF = 0.0
TTM = {"mim_weight": OFF, "mrm_weight": OFF}
FULL = {"mim_weight": 1.0, "mrm_weight": 1.0}
# The demo recipe on plain data (no minimal pairs; "list" and "relation" captions), without checkpoints and trackers.
BASE_RUN = {
    **{name: value for name, value in DEMO_SETTINGS.items() if name not in ("output_dir", "overwrite_output_dir")},
    "demo_minimal_pairs": 0.0,
    "demo_templates": ["list", "relation"],
    "checkpoint_every": 0,
    "report_to": [],
}
NEGATIVES = {"caption_negatives": 3}
# E1: the same short ITC+ITM fine-tune for every arm.
FINE_TUNE = {
    "max_steps": 300,
    "learning_rate": 2e-4,
    "min_learning_rate": 2e-5,
    "warmup_steps": 30,
    "eval_pairs": 0,
    "model_config": {"mlm_weight": OFF, "mim_weight": OFF, "mrm_weight": OFF},
}
ARMS = {
    "ttm": {"model_config": TTM},
    "mamo": {"model_config": {}},
    "ttm_hn": {"model_config": TTM, **NEGATIVES},
    "mamo_hn": {"model_config": {}, **NEGATIVES},
    "mamo_hn_rrc": {"model_config": {}, **NEGATIVES, "caption_safe_crops": False},
    "ttm_rrc": {"model_config": TTM, "caption_safe_crops": False},
    "ttm_ft": {"model_config": TTM, "fine_tune": True},
    "mamo_ft": {"model_config": {}, "fine_tune": True},
    "warm_ttm": {"model_config": TTM, "warm_start": True, "max_steps": 750},
    # The stage-1 checkpoint's config has MIM and MRM off: E2's MAMO arm turns them back on explicitly.
    "warm_mamo": {"model_config": {**FULL, "normalize_targets": True}, "warm_start": True, "max_steps": 750},
    "curve_ttm_hn": {"model_config": TTM, **NEGATIVES, "max_steps": 6000, "curve_every": 750},
    "curve_mamo_hn": {"model_config": {}, **NEGATIVES, "max_steps": 6000, "curve_every": 750},
    # Issue 20: BERT's attention dropout (0.1) in the text and fusion encoders, as `mamo-base` inherits it; the
    # tiny preset has none. `mamo_hn_repro` reruns `mamo_hn` to show that its rows still reproduce on this code.
    "mamo_hn_attention_dropout": {"model_config": {}, **NEGATIVES, "attention_dropout": 0.1},
    "mamo_hn_repro": {"model_config": {}, **NEGATIVES},
    # Issue 27: the caption-negative rules rewritten for real captions (no word shuffles by default), against the same
    # rules with shuffles added back, on the leak-free demo data; `ttm_hn` reruns on today's code.
    "ttm_hn_shuffle": {
        "model_config": TTM,
        **NEGATIVES,
        "caption_negative_families": [*DEFAULT_FAMILIES, "shuffle"],
    },
}
TEMPLATES = ("list", "relation", "attribute")
BENCHMARK_SEED = 12345
PRIMARY = "list_itm_accuracy"


def parse_arm(name: str) -> dict:
    """`arm[@steps=N]` → its settings (`@steps=N` trains N steps, for equal wall-clock comparisons)."""
    base, _, option = name.partition("@")
    if base not in ARMS:
        raise SystemExit(f"Unknown arm {base!r}; known: {', '.join(ARMS)}")
    settings = json.loads(json.dumps(ARMS[base]))
    if option:
        key, _, value = option.partition("=")
        if key != "steps":
            raise SystemExit(f"Unknown option {option!r} in {name!r}: only @steps=N.")
        settings["max_steps"] = int(value)
    return settings


def train(settings: dict, seed: int, output_dir: str, **extra):
    from mamo_hf.training import PretrainingArguments, pretrain

    settings = dict(settings)
    if "attention_dropout" in settings:
        with_text_and_fusion_attention_dropout(settings.pop("attention_dropout"))
    arguments = {**BASE_RUN, **settings, **extra, "seed": seed, "output_dir": output_dir}
    return pretrain(PretrainingArguments(**arguments))


def with_text_and_fusion_attention_dropout(probability: float) -> None:
    """Make the tiny preset's text and fusion encoders drop attention probabilities with `probability` (BERT's
    `attention_probs_dropout_prob`; a ViT from ImageNet-21k has none), in this run's process only. `MamoConfig.tiny`
    sets no dropout and `model_config` reaches only top-level fields, so the preset builder is wrapped."""
    from mamo_hf.training import model

    build = model.tiny_config_and_processor

    def build_with_dropout(*args, **kwargs):
        config, processor = build(*args, **kwargs)
        config.text_config.attention_probs_dropout_prob = probability
        config.fusion_encoder_config.attention_probs_dropout_prob = probability
        return config, processor

    model.tiny_config_and_processor = build_with_dropout


def benchmark(model, processor) -> dict:
    """Fine-grained accuracies (%) per template, prefixed with the template's name."""
    from mamo_hf.data.finegrained import finegrained_examples
    from mamo_hf.evaluation.finegrained import evaluate_finegrained

    metrics = {}
    for template in TEMPLATES:
        examples = finegrained_examples(600, seed=BENCHMARK_SEED, image_size=BASE_RUN["image_size"], template=template)
        scores = evaluate_finegrained(model, processor, examples)
        metrics.update({f"{template}_{name}": round(value, 2) for name, value in scores.items()})
    return metrics


def warm_start_checkpoint(seed: int, cache: Path) -> str:
    """E2's shared stage 1 of a seed: 750 steps of ITC+ITM+MLM, trained once and kept in `cache`. The arms of one
    seed may ask for it at the same time: the first trains it, the others wait on the seed's lock file."""
    folder = cache / f"warm-stage1-seed{seed}"
    with open(cache / f"warm-stage1-seed{seed}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "model.safetensors").exists():
            train({"model_config": TTM, "max_steps": 750}, seed, str(folder), overwrite_output_dir=True)
    return str(folder)


def learning_curve(result, output_dir: str) -> list[dict]:
    """The benchmark at every checkpoint of a finished run (loaded into a copy of its model), oldest first."""
    import copy

    from safetensors.torch import load_model

    from mamo_hf.training import list_checkpoints

    model, seconds_per_step = copy.deepcopy(result.model), result.summary["seconds"] / result.summary["steps"]
    points = []
    for checkpoint in list_checkpoints(Path(output_dir)):
        load_model(model, checkpoint / "model.safetensors", strict=False)
        step = int(checkpoint.name.rpartition("-")[2])
        seconds = round(step * seconds_per_step, 1)
        points.append({"step": step, "seconds": seconds, **benchmark(model, result.processor)})
    return points


def run_one(arm: str, seed: int, cache: Path) -> dict:
    import torch

    torch.set_num_threads(1)
    settings = parse_arm(arm)
    fine_tune, warm_start = settings.pop("fine_tune", False), settings.pop("warm_start", False)
    curve_every = settings.pop("curve_every", 0)
    if curve_every:
        settings.update(checkpoint_every=curve_every, save_total_limit=0)
    row = {"arm": arm, "seed": seed}
    with tempfile.TemporaryDirectory() as output_dir:
        extra = {"init": warm_start_checkpoint(seed, cache)} if warm_start else {}
        result = train(settings, seed, output_dir, **extra)
        row.update(steps=result.summary["steps"], train_seconds=result.summary["seconds"])
        if curve_every:
            row["curve"] = learning_curve(result, output_dir)
        retrieval = result.summary["retrieval_after"]
        if retrieval:
            row.update(retrieval_itc_tr_r1=retrieval["itc"]["txt_r1"], retrieval_itm_tr_r1=retrieval["itm"]["txt_r1"])
        started = time.perf_counter()
        row.update(benchmark(result.model, result.processor))
        row["eval_seconds"] = round(time.perf_counter() - started, 1)
        if fine_tune:
            row.update({f"pre_{name}": value for name, value in row.items() if name.startswith(TEMPLATES)})
            with tempfile.TemporaryDirectory() as tuned_dir:
                tuned = train(FINE_TUNE, seed, tuned_dir, init=output_dir)
                row["fine_tune_seconds"] = tuned.summary["seconds"]
                row.update(benchmark(tuned.model, tuned.processor))
    return row


def run_grid(args) -> None:
    for arm in args.arms:
        parse_arm(arm)  # fail before any work on a bad name
    args.cache.mkdir(parents=True, exist_ok=True)
    run_missing(
        __file__,
        "arm",
        args.arms,
        args.seeds,
        args.results,
        args.jobs,
        ["--cache", str(args.cache)],
        lambda row: (
            f"{row['arm']:16s} seed {row['seed']}: {PRIMARY} {row[PRIMARY]:.1f} ({row['train_seconds']:.0f} s)"
        ),
    )


def summarize(args) -> None:
    by_arm: dict[str, dict[int, dict]] = {}
    for row in load_results(args.results):
        by_arm.setdefault(row["arm"], {})[row["seed"]] = row
    reference = by_arm.get(args.reference, {})
    metrics = args.metrics
    print(
        "| arm | seeds | s/run | "
        + " | ".join(metrics)
        + f" | Δ {metrics[0]} vs {args.reference}, paired [95 % CI] (p, smallest detectable Δ) |"
    )
    print("|" + "---|" * (4 + len(metrics)))
    for arm, runs in by_arm.items():
        cells = []
        for metric in metrics:
            values = [run[metric] for run in runs.values() if metric in run]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.1f} ± {spread:.1f}" if values else "—")
        common = sorted(set(runs) & set(reference))
        comparison = ""
        if arm != args.reference and len(common) > 1:
            paired = paired_comparison([runs[seed][metrics[0]] - reference[seed][metrics[0]] for seed in common])
            low, high = paired["ci95"]
            comparison = (
                f"{paired['mean']:+.1f} [{low:+.1f}, {high:+.1f}] (n={paired['n']}, p={paired['p']:.3f}, "
                f"detects ±{paired['detectable']})"
            )
        seconds = statistics.median(run["train_seconds"] for run in runs.values())
        seeds = ",".join(str(seed) for seed in sorted(runs))
        print(f"| {arm} | {seeds} | {seconds:.0f} | " + " | ".join(cells) + f" | {comparison} |")


# The seconds axis of E3: the curve runs overlapped other jobs for part of their time, so their own clocks are not
# comparable; each step is costed at the median step time of the same arm's 1,500-step runs, measured two at a time.
CURVE_STEP_TIME_FROM = {"curve_ttm_hn": "ttm_hn", "curve_mamo_hn": "mamo_hn"}


def plot(args) -> None:
    """E3's picture: `metric` (mean ± std over seeds) of every `curve_*` arm against steps and against seconds,
    with a markdown table of the same points."""
    from mamo_hf.plots import plot_panels

    rows = load_results(args.results)
    curves: dict[str, list[list[dict]]] = {}
    for row in rows:
        if "curve" in row:
            curves.setdefault(row["arm"], []).append(row["curve"])
    panels: dict[str, dict] = {f"{args.metric} (%) vs steps": {}, f"{args.metric} (%) vs training seconds": {}}
    for arm, runs in curves.items():
        timing = [row["train_seconds"] / row["steps"] for row in rows if row["arm"] == CURVE_STEP_TIME_FROM[arm]]
        seconds_per_step = statistics.median(timing)
        steps = sorted(set.intersection(*({point["step"] for point in run} for run in runs)))
        at = [[next(point for point in run if point["step"] == step) for run in runs] for step in steps]
        means = [statistics.mean(point[args.metric] for point in points) for points in at]
        spreads = [statistics.stdev(point[args.metric] for point in points) if len(runs) > 1 else 0.0 for points in at]
        seconds = [step * seconds_per_step for step in steps]
        label = f"{arm} ({len(runs)} seeds)"
        panels[f"{args.metric} (%) vs steps"][label] = list(zip(steps, means, spreads))
        panels[f"{args.metric} (%) vs training seconds"][label] = list(zip(seconds, means, spreads))
        cells = [f"{step}: {mean:.1f} ± {spread:.1f}" for step, mean, spread in zip(steps, means, spreads)]
        print(f"| {label} | {seconds_per_step:.3f} s/step | " + " | ".join(cells) + " |")
    print(plot_panels(panels, args.output, columns=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    cache = Path(tempfile.gettempdir()) / "mamo-binding-cache"
    grid = commands.add_parser("run", help="run every (arm, seed) not yet in the results file")
    grid.add_argument("--arms", nargs="+", required=True)
    grid.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4, 5])
    grid.add_argument("--jobs", type=int, default=2)
    grid.add_argument("--results", type=Path, default=RESULTS)
    grid.add_argument("--cache", type=Path, default=cache, help="E2's shared stage-1 checkpoints")
    one = commands.add_parser("one", help="run one (arm, seed) and print its result as JSON")
    one.add_argument("arm")
    one.add_argument("seed", type=int)
    one.add_argument("--cache", type=Path, default=cache)
    summary = commands.add_parser("summary", help="mean ± std per arm, paired permutation test against a reference")
    summary.add_argument("--reference", default="ttm_hn")
    summary.add_argument(
        "--metrics",
        nargs="+",
        default=[PRIMARY, "list_itc_accuracy", "relation_itm_accuracy", "attribute_itm_accuracy"],
    )
    summary.add_argument("--results", type=Path, default=RESULTS)
    picture = commands.add_parser("plot", help="E3: the curve arms against steps and seconds, as a PNG")
    picture.add_argument("--metric", default=PRIMARY)
    picture.add_argument("--results", type=Path, default=RESULTS)
    picture.add_argument("--output", type=Path, default=RESULTS.parent / "binding_curves.png")
    args = parser.parse_args()
    if args.command == "run":
        run_grid(args)
    elif args.command == "one":
        print(json.dumps(run_one(args.arm, args.seed, args.cache)))
    elif args.command == "summary":
        summarize(args)
    else:
        plot(args)


if __name__ == "__main__":
    main()
