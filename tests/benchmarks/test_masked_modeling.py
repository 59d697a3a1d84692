"""The tables of benchmarks/masked_modeling.py: each metric of each arm against the reference on the same seeds."""

import argparse
import json
import sys

from helpers import BENCHMARKS

sys.path.insert(0, str(BENCHMARKS))
import masked_modeling  # noqa: E402


def run_row(arm: str, seed: int, score: float, **extra) -> dict:
    probes = {
        "dense_probe": {"colour": {"miou": score}, "shape": {"miou": score}},
        "grounding": {"accuracy": score},
        "retrieval": {"after": {"itc_txt_r1": score, "itm_txt_r1": score, "itm_img_r1": score}},
    }
    return {
        "arm": arm,
        "seed": seed,
        "steps": 6000,
        "train_seconds": 100.0,
        "list_itm_accuracy": score,
        "probes": probes,
        **extra,
    }


def test_the_summary_pairs_each_arm_with_the_reference_on_the_seeds_both_ran(tmp_path, capsys):
    rows = [
        run_row("recipe_ttm", 0, 50.0),
        run_row("recipe_ttm", 1, 60.0),
        run_row("recipe_ttm", 2, 70.0),  # the other arm has no seed 2: left out of the pairing
        run_row("recipe_mamo", 0, 53.0),
        run_row("recipe_mamo", 1, 65.0),
        run_row("recipe_mamo", 1, 0.0, kind="equal_time", step=4500),
    ]
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(row) + "\n" for row in rows))
    masked_modeling.summarize(argparse.Namespace(results=results))
    printed = capsys.readouterr().out
    equal_steps, equal_time = printed.split("### equal training time")
    binding = next(line for line in equal_steps.splitlines() if line.startswith("| binding"))
    assert binding.startswith('| binding, ITM 6-way "list" | 60.0 (seeds: 3) | +4.0 [')
    assert "(n=2, p=0.500" in binding
    at_equal_time = next(line for line in equal_time.splitlines() if line.startswith("| grounding"))
    assert at_equal_time.endswith("| -60.0 (1 seed: no interval) |")
