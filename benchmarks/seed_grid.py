"""What the seed-grid benchmarks (`ablation.py`, `binding.py`, `masked_modeling.py`) share: a JSON-lines file of
results, one line per (variant, seed), and running every pair not yet in it, each in a process of its own on one
thread, a few side by side; and the paired comparison of two arms over their seeds. Not a benchmark itself: the
scripts import it from their folder."""

import itertools
import json
import math
import os
import statistics
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def load_results(path: Path) -> list[dict]:
    """The rows of a results file (none when it does not exist yet)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def run_missing(
    script: str,
    key: str,
    variants: list[str],
    seeds: list[int],
    results: Path,
    jobs: int,
    one_arguments: list[str],
    describe: Callable[[dict], str],
) -> None:
    """Run `python SCRIPT one VARIANT SEED *one_arguments` for every (variant, seed) whose row (`row[key]`,
    `row["seed"]`) is not in `results`, `jobs` at a time, seed after seed; append each printed JSON row as it
    finishes and print `describe(row)`."""
    done = {(row[key], row["seed"]) for row in load_results(results)}
    todo = [(variant, seed) for seed in seeds for variant in variants if (variant, seed) not in done]
    print(f"{len(todo)} runs to do ({len(done)} already in {results})", flush=True)

    def launch(job):
        variant, seed = job
        command = [sys.executable, script, "one", variant, str(seed), *one_arguments]
        environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
        finished = subprocess.run(command, capture_output=True, text=True, env=environment)
        if finished.returncode != 0:
            print(f"FAILED {variant} seed {seed}:\n{finished.stderr[-3000:]}", flush=True)
            return
        row = json.loads(finished.stdout.strip().splitlines()[-1])
        with results.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        print(describe(row), flush=True)

    results.parent.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(launch, todo))


# Two-sided 95 % quantiles of Student's t by degrees of freedom (the paired comparisons have 2 to 11 seeds).
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def sign_flip_p_value(differences: list[float]) -> float:
    """Exact two-sided paired permutation test of mean(differences) = 0: the share of the 2^n sign patterns whose
    mean is at least as far from 0 as the observed one (with 6 seeds the smallest p is 2/64 = 0.031)."""
    observed = abs(statistics.mean(differences))
    patterns = list(itertools.product((1, -1), repeat=len(differences)))
    extreme = sum(
        abs(statistics.mean(sign * value for sign, value in zip(signs, differences))) >= observed - 1e-12
        for signs in patterns
    )
    return extreme / len(patterns)


def paired_comparison(differences: list[float]) -> dict:
    """A paired comparison over seeds: the mean difference, its 95 % t-interval `mean ± t · sd / √n`, the exact
    sign-flip p, and the smallest true mean difference the design detects at the 5 % level with 80 % power,
    `(t + 0.84) · sd / √n` (a normal approximation of the power, with the observed sd)."""
    n, mean = len(differences), statistics.mean(differences)
    sd = statistics.stdev(differences) if n > 1 else math.nan
    half = T_975.get(n - 1, 1.96) * sd / math.sqrt(n)
    return {
        "n": n,
        "mean": round(mean, 2),
        "ci95": [round(mean - half, 2), round(mean + half, 2)],
        "p": sign_flip_p_value(differences),
        "detectable": round((T_975.get(n - 1, 1.96) + 0.84) * sd / math.sqrt(n), 1),
    }
