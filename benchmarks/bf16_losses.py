"""Do MAMO's pre-training losses under bf16 autocast match fp32? One forward of `MamoForPreTraining` at a `peer_step`
size, the same weights, inputs, masks and hard negatives, dropout off, fp32 against `torch.autocast(bfloat16)`.

    python benchmarks/bf16_losses.py --size small

Prints each loss term in both precisions and their relative difference (the target is below 1 %).
"""

import argparse

import torch
from peer_step import SIZES, make_batch, mamo_config

from mamo_hf import MamoForPreTraining

LOSSES = ("loss", "loss_itc", "loss_itm", "loss_mlm", "loss_mim", "loss_mrm")


def losses(model, inputs: dict, device: str, bf16: bool) -> dict[str, float]:
    with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
        outputs = model(**inputs, generator=torch.Generator(device).manual_seed(0))
    return {name: float(getattr(outputs, name)) for name in LOSSES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    size = SIZES[args.size]
    batch = make_batch(size)
    inputs = {name: batch[name].to(args.device) for name in ("pixel_values", "input_ids", "attention_mask")}
    torch.manual_seed(0)
    model = MamoForPreTraining(mamo_config(size)).to(args.device).train()
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0  # the same network in both runs
    fp32, bf16 = losses(model, inputs, args.device, False), losses(model, inputs, args.device, True)
    print("| loss | fp32 | bf16 autocast | relative difference |\n|---|---|---|---|")
    for name in LOSSES:
        print(
            f"| {name} | {fp32[name]:.4f} | {bf16[name]:.4f} | {abs(bf16[name] - fp32[name]) / abs(fp32[name]):.2%} |"
        )


if __name__ == "__main__":
    main()
