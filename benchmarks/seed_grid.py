"""What the seed-grid benchmarks (`ablation.py`, `binding.py`) share: a JSON-lines file of results, one line per
(variant, seed), and running every pair not yet in it, each in a process of its own on one thread, a few side by
side. Not a benchmark itself: the scripts import it from their folder."""

import json
import os
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
