"""Where the FLOPs of MAMO's pre-training step go: forward FLOPs per component, counted exactly.

    python benchmarks/step_flops.py --size small

One forward of `MamoForPreTraining` (five objectives, a `peer_step` size) under
`torch.utils.flop_counter.FlopCounterMode` with the math attention kernel (so that attention is counted on CPU),
split by top-level module: the student's image, text and fusion encoders, the teacher's three encoders and the
heads. The fusion encoder runs once on all the views of the step, so its share per view follows from the number
of sequences each view puts into that call. Backward FLOPs (about twice the forward of everything that gets a
gradient; the teacher gets none) are not attributed here: FlopCounterMode's module tracking is not reliable in
the backward. `benchmarks/peer_step.py` counts the whole step, forward and backward.
"""

import argparse

import torch
from peer_step import SIZES, make_batch, mamo_config
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from mamo_hf import MamoForPreTraining

COMPONENTS = {
    "student image encoder (I and the visible patches of Ĩ)": "mamo.image_encoder",
    "student text encoder (T and T̃)": "mamo.text_encoder",
    "student fusion encoder (all views, one call)": "mamo.fusion_encoder",
    "teacher image encoder (I)": "teacher.image_encoder",
    "teacher text encoder (T)": "teacher.text_encoder",
    "teacher fusion encoder (I, T)": "teacher.fusion_encoder",
    "MLM head": "mlm_head",
    "MIM predictor": "mim_predictor",
    "MRM predictor": "mrm_predictor",
    "ITM head": "itm_head",
}


def forward_flops(model, inputs: dict) -> tuple[int, dict[str, int]]:
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False, depth=3) as counter:
        model(**inputs, generator=torch.Generator().manual_seed(0))
    counts = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    prefix = type(model).__name__ + "."
    return counter.get_total_flops(), {label: counts.get(prefix + module, 0) for label, module in COMPONENTS.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    args = parser.parse_args()
    size = SIZES[args.size]
    batch = make_batch(size)
    torch.manual_seed(0)
    model = MamoForPreTraining(mamo_config(size)).train()
    inputs = {name: batch[name] for name in ("pixel_values", "input_ids", "attention_mask")}
    total, components = forward_flops(model, inputs)
    pairs = size.batch_size
    print(f"size {args.size}: forward {total / pairs / 1e9:.2f} GFLOP per pair\n")
    print("| component | forward GFLOP per pair | share of the forward |\n|---|---|---|")
    for label, flops in components.items():
        print(f"| {label} | {flops / pairs / 1e9:.3f} | {flops / total:.1%} |")
    rest = total - sum(components.values())
    print(f"| other (projections, ITC, losses) | {rest / pairs / 1e9:.3f} | {rest / total:.1%} |")


if __name__ == "__main__":
    main()
