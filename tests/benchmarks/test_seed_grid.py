"""The paired comparison the seed-grid benchmarks report for every claim (benchmarks/seed_grid.py)."""

import statistics
import sys

import pytest
from helpers import BENCHMARKS

sys.path.insert(0, str(BENCHMARKS))
from seed_grid import paired_comparison, sign_flip_p_value  # noqa: E402


def test_six_positive_differences_reach_the_smallest_possible_p():
    assert sign_flip_p_value([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]) == pytest.approx(2 / 64)


def test_differences_symmetric_about_zero_give_p_one():
    assert sign_flip_p_value([-2.0, -1.0, 1.0, 2.0]) == 1.0


def test_the_interval_is_the_t_interval_and_the_detectable_effect_adds_the_power_quantile():
    differences = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    comparison = paired_comparison(differences)
    standard_error = statistics.stdev(differences) / len(differences) ** 0.5
    assert comparison["n"] == 6 and comparison["mean"] == 3.5
    assert comparison["ci95"] == [round(3.5 - 2.571 * standard_error, 2), round(3.5 + 2.571 * standard_error, 2)]
    assert comparison["detectable"] == pytest.approx((2.571 + 0.84) * standard_error, abs=0.05)


def test_a_noisier_comparison_has_a_wider_interval_and_detects_only_larger_effects():
    quiet = paired_comparison([3.0, 4.0, 3.0, 4.0, 3.0, 4.0])
    noisy = paired_comparison([-10.0, 17.0, 3.0, -4.0, 13.0, 2.0])
    assert quiet["mean"] == noisy["mean"] == 3.5
    assert noisy["ci95"][1] - noisy["ci95"][0] > quiet["ci95"][1] - quiet["ci95"][0]
    assert noisy["detectable"] > quiet["detectable"]
