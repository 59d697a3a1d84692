"""Where the pre-training step's time goes, by operator: MAMO's step beside FLAVA's, profiled with `torch.profiler`.

    python benchmarks/profile_step.py --size small --threads 2      # -> benchmarks/results/profile_step_cpu.json

Runs one warm-up step and one profiled step (forward, backward and optimizer step, as `peer_step.py` builds them)
of each model, and reports the share of the step's self CPU time in matrix multiplications, the number of
matmul calls and their mean size, and the operators that take the most time. Where a step's time sits outside the
matmuls (elementwise work, copies, dropout, many small matmuls) is where it loses achieved FLOP/s.
"""

import argparse
import json
from collections import Counter
from pathlib import Path

import torch
from peer_step import PRETRAINING, SIZES, Setup, make_batch
from torch.profiler import ProfilerActivity, profile

MATMULS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"}


def profile_workload(workload, top: int) -> dict:
    workload.step()  # warm-up
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as profiler:
        workload.step()
    events = profiler.key_averages()
    total = sum(event.self_cpu_time_total for event in events)
    by_operator = Counter({event.key: event.self_cpu_time_total for event in events})
    matmul_time = sum(by_operator[name] for name in MATMULS)
    matmul_calls = sum(event.count for event in events if event.key in MATMULS)
    matmul_rows = [
        event.input_shapes[0][0] if event.input_shapes and event.input_shapes[0] else 0
        for event in profiler.key_averages(group_by_input_shape=True)
        if event.key in ("aten::mm", "aten::addmm")
        for _ in range(event.count)
    ]
    return {
        "label": workload.label,
        "self_cpu_seconds": total / 1e6,
        "matmul_share": matmul_time / total,
        "matmul_calls": matmul_calls,
        "mean_matmul_rows": sum(matmul_rows) / max(len(matmul_rows), 1),
        "top_operators": [
            {"operator": name, "share": seconds / total} for name, seconds in by_operator.most_common(top)
        ],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=SIZES, default="small")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", nargs="+", choices=PRETRAINING, default=["mamo", "mamo-itc-itm-mlm", "flava"])
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    size = SIZES[args.size]
    setup = Setup(size, "cpu", torch.float32, make_batch(size), flava_codebook=False)
    results = {"settings": vars(args), "models": {}}
    for name in args.models:
        result = profile_workload(PRETRAINING[name](setup), args.top)
        results["models"][name] = result
        print(
            f"\n{result['label']}: {result['self_cpu_seconds']:.2f} s of self CPU time, "
            f"{result['matmul_share']:.0%} in matmuls ({result['matmul_calls']} calls, "
            f"{result['mean_matmul_rows']:.0f} rows on average)"
        )
        for entry in result["top_operators"]:
            print(f"  {entry['share']:6.1%}  {entry['operator']}")
    output = Path(__file__).parent / "results" / "profile_step_cpu.json"
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {output}")


if __name__ == "__main__":
    main()
