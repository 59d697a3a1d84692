"""The README's and model card's generated numbers (benchmarks/readme_numbers.py): fresh, and read as their intervals
allow."""

import json
import sys

import pytest
from helpers import BENCHMARKS

sys.path.insert(0, str(BENCHMARKS))
import readme_numbers  # noqa: E402


def test_every_generated_passage_matches_its_results_file():
    assert readme_numbers.main(["--check"]) == 0, "run python benchmarks/readme_numbers.py and commit the documents"


def write_arms(folder, arms: dict[str, list[float]]) -> None:
    lines = [
        json.dumps({"arm": arm, "seed": seed, "steps": 1500, "train_seconds": 300.0, "list_itm_accuracy": score})
        for arm, scores in arms.items()
        for seed, score in enumerate(scores)
    ]
    (folder / "grid.jsonl").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("better", "reads"),
    [
        ([12.0, 23.0, 31.0, 14.0, 45.0, 36.0], "higher"),  # +10 to +11 in every seed
        ([-8.0, 1.0, 12.0, -5.0, 24.0, 16.0], "lower"),  # −9 to −11 in every seed
        ([12.0, 33.0, 11.0, 34.0, 15.0, 36.0], "not resolved: the interval holds 0"),  # ±10 around 0
    ],
)
def test_a_comparison_reads_higher_or_lower_only_when_its_interval_excludes_zero(tmp_path, monkeypatch, better, reads):
    monkeypatch.setattr(readme_numbers, "RESULTS", tmp_path)
    write_arms(tmp_path, {"a": better, "b": [2.0, 12.0, 21.0, 4.0, 35.0, 25.0]})
    table = readme_numbers.comparison_table(
        [("a − b", readme_numbers.Scores("grid.jsonl", "a"), readme_numbers.Scores("grid.jsonl", "b"))]
    )
    assert table.splitlines()[2].endswith(f"| {reads} |")


def test_an_interval_clear_of_zero_with_an_exact_p_above_five_per_cent_is_not_resolved():
    paired = {"ci95": [2.3, 25.5], "p": 0.062}
    assert readme_numbers.verdict(paired) == "not resolved: the exact test's p is 0.062"


def test_a_missing_arm_is_named_rather_than_left_out(tmp_path, monkeypatch):
    monkeypatch.setattr(readme_numbers, "RESULTS", tmp_path)
    write_arms(tmp_path, {"a": [1.0, 2.0]})
    with pytest.raises(SystemExit, match="no arm 'gone' in benchmarks/results/grid.jsonl"):
        readme_numbers.Scores("grid.jsonl", "gone").by_seed()


def test_equal_time_takes_the_checkpoint_nearest_to_the_other_runs_whole_time(tmp_path, monkeypatch):
    monkeypatch.setattr(readme_numbers, "RESULTS", tmp_path)
    steps = range(750, 6001, 750)
    rows = [
        {"arm": "ttm_hn", "seed": 0, "steps": 1500, "train_seconds": 300.0},  # 0.2 s a step: 6,000 steps = 1,200 s
        {"arm": "mamo_hn", "seed": 0, "steps": 1500, "train_seconds": 450.0},  # 0.3 s a step: 1,200 s = step 4,000
        {
            "arm": "curve_ttm_hn",
            "seed": 0,
            "steps": 6000,
            "curve": [{"step": s, "list_itm_accuracy": 1.0} for s in steps],
        },
        {
            "arm": "curve_mamo_hn",
            "seed": 0,
            "steps": 6000,
            "curve": [{"step": s, "list_itm_accuracy": s} for s in steps],
        },
    ]
    (tmp_path / "curves.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    at_equal_time = readme_numbers.Scores("curves.jsonl", "curve_mamo_hn", at_seconds_of=("curve_ttm_hn", "ttm_hn"))
    assert at_equal_time.by_seed() == {0: 3750}  # 1,125 s is nearer to 1,200 s than 4,500 steps' 1,350 s
