"""Does `torch.compile` speed up MAMO's pre-training step? Forward and backward of `MamoForPreTraining` (five
objectives, a `peer_step` size), eager against `torch.compile(model)` (inductor) on the same weights and inputs.

    python benchmarks/compile_step.py --size tiny --repeats 5

Reports the compile time (the first compiled step) and the median seconds per step of each, taking turns.
"""

import argparse
import statistics
import time

import torch
from peer_step import SIZES, make_batch, mamo_config

from mamo_hf import MamoForPreTraining


def timed_step(model, inputs: dict) -> float:
    started = time.perf_counter()
    model(**inputs, generator=torch.Generator().manual_seed(0)).loss.backward()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    size = SIZES[args.size]
    batch = make_batch(size)
    inputs = {name: batch[name] for name in ("pixel_values", "input_ids", "attention_mask")}
    torch.manual_seed(0)
    eager = MamoForPreTraining(mamo_config(size)).train()
    compiled = torch.compile(eager)
    compile_seconds = timed_step(compiled, inputs)
    timed_step(eager, inputs)  # warm-up
    seconds = {"eager": [], "compiled": []}
    for _ in range(args.repeats):
        seconds["eager"].append(timed_step(eager, inputs))
        seconds["compiled"].append(timed_step(compiled, inputs))
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    print(f"size {args.size}: first compiled step (compilation) {compile_seconds:.1f} s")
    print(
        f"eager {medians['eager']:.3f} s/step, compiled {medians['compiled']:.3f} s/step, ratio "
        f"{medians['eager'] / medians['compiled']:.2f}×"
    )


if __name__ == "__main__":
    main()
