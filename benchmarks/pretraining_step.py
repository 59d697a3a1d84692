"""Pre-training step: the design choices of `MamoForPreTraining`, measured side by side in one run.

    python benchmarks/pretraining_step.py --width 256 --layers 4 --batch-size 32 --repeats 5

Compares, on the same inputs and weights (forward + backward of one step, median of `--repeats`, the variants
taking turns so that no variant profits from running first or last):

1. one fusion call on all the views of the step (positives, hard negatives, (Ĩ, T), (I, T̃)) — what the model does —
   against one fusion call per view;
2. the fusion encoder's last layer at the positions a loss reads (the default) against everywhere;
3. SDPA attention (the default) against eager attention;
4. activation checkpointing against plain (time; on a GPU also peak memory).

Writes `benchmarks/results/pretraining_step_<device>.json`. Ratios > 1 mean the model's choice is faster.
"""

import argparse
import json
import statistics
import time
from functools import partial
from pathlib import Path

import torch

from mamo_hf import MamoConfig, MamoForPreTraining
from mamo_hf.modeling_mamo import FusionBatch


class _FusionPerView(FusionBatch):
    """An alternative to measure: the fusion encoder once per view (no padding to the longest text)."""

    def run(self, model):
        fused = {}
        for name, view in self.views.items():
            single = FusionBatch(self.read_positions_only)
            single.views = {name: view}
            fused.update(single.run(model))
        return fused


# An alternative to measure: the last fusion layer at every position, then the read positions selected.
_LastLayerEverywhere = partial(FusionBatch, read_positions_only=False)


def build(args) -> tuple[MamoForPreTraining, dict]:
    width = {
        "hidden_size": args.width,
        "num_attention_heads": args.width // 64,
        "intermediate_size": 4 * args.width,
        "num_hidden_layers": args.layers,
    }
    config = MamoConfig(
        vision_config={"image_size": args.image_size, "patch_size": 16, **width},
        text_config={
            "vocab_size": 1000,
            "pad_token_id": 0,
            "cls_token_id": 1,
            "sep_token_id": 2,
            "mask_token_id": 3,
            **width,
        },
        fusion_encoder_config=width,
    )
    torch.manual_seed(0)
    model = MamoForPreTraining(config).to(args.device).train()
    generator = torch.Generator().manual_seed(0)
    batch = {
        "input_ids": torch.randint(4, 1000, (args.batch_size, 30), generator=generator),
        "attention_mask": torch.ones(args.batch_size, 30, dtype=torch.long),
        "pixel_values": torch.randn(args.batch_size, 3, args.image_size, args.image_size, generator=generator),
    }
    return model, {name: value.to(args.device) for name, value in batch.items()}


def step_seconds(model, batch, device: str, seed: int) -> tuple[float, float | None]:
    """Seconds of one forward + backward, and the peak accelerator memory in GiB (None on CPU)."""
    model.zero_grad(set_to_none=True)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    loss = model(**batch, generator=torch.Generator(device=device).manual_seed(seed)).loss
    loss.backward()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    memory = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None
    return time.perf_counter() - started, memory


def configure(model, modeling, fusion_batch, attention: str, checkpointing: bool) -> None:
    """Put the model (and the module's fusion layout) into one variant's configuration."""
    modeling.FusionBatch = fusion_batch
    model.set_attn_implementation(attention)
    if checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.activation_checkpointing_disable()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    import mamo_hf.modeling_mamo as modeling

    model, batch = build(args)
    results = {"settings": vars(args), "seconds": {}, "peak_memory_gib": {}}

    one_call = modeling.FusionBatch
    variants = {
        "one fusion call (sdpa)": (one_call, "sdpa", False),
        "fusion per view (sdpa)": (_FusionPerView, "sdpa", False),
        "last fusion layer everywhere (sdpa)": (_LastLayerEverywhere, "sdpa", False),
        "one fusion call (eager)": (one_call, "eager", False),
        "one fusion call (sdpa, checkpointing)": (one_call, "sdpa", True),
    }
    times = {name: [] for name in variants}
    for repeat in range(args.repeats + 1):  # the variants take turns; the first round warms up
        for name, variant in variants.items():
            configure(model, modeling, *variant)
            seconds, memory = step_seconds(model, batch, args.device, repeat)
            if repeat:
                times[name].append(seconds)
                results["peak_memory_gib"][name] = memory
    configure(model, modeling, one_call, "sdpa", False)
    results["seconds"] = {name: statistics.median(values) for name, values in times.items()}

    seconds = results["seconds"]
    results["ratios"] = {
        "fusion per view / one call": seconds["fusion per view (sdpa)"] / seconds["one fusion call (sdpa)"],
        "last layer everywhere / read positions only": seconds["last fusion layer everywhere (sdpa)"]
        / seconds["one fusion call (sdpa)"],
        "eager / sdpa": seconds["one fusion call (eager)"] / seconds["one fusion call (sdpa)"],
        "checkpointing / plain": seconds["one fusion call (sdpa, checkpointing)"] / seconds["one fusion call (sdpa)"],
    }
    print(json.dumps(results, indent=2))
    output = Path(__file__).parent / "results" / f"pretraining_step_{args.device.split(':')[0]}.json"
    output.parent.mkdir(exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
