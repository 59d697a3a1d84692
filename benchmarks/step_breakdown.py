"""Where MAMO's step spends the time that an ITC+ITM+MLM step does not: the parts that its two extra losses require.

    python benchmarks/step_breakdown.py --size demo  --rounds 7    # the demo model (64 px, batch 32 demo pairs)
    python benchmarks/step_breakdown.py --size small --rounds 3    # peer_step.py's `small` (128 px, width 384)
    python benchmarks/step_breakdown.py --size demo --momentum-distillation    # both with ALBEF's queue and teacher

Builds `MamoForPreTraining` twice from one seed: with its five objectives, and with `mim_weight=0, mrm_weight=0`
(ITC, ITM, MLM: no teacher pass, no masked image). With `--momentum-distillation` both models use ALBEF's ITC: a
queue of 65,536 teacher features and distillation from the teacher's similarities (`queue_size=65536,
distill_alpha=0.4`), so that the reference is ALBEF's step and also runs the teacher's image and text encoders.
Times, interleaved round-robin in one process on one thread after a warm-up, the median over `--rounds`:

- each model's optimizer step (forward, backward, AdamW, `update_teacher()`): the ratio that issue 20 asks for;
- the parts of the five-objective step that MIM and MRM need and ITC+ITM+MLM does not, each alone on the inputs
  of that step:
  - `teacher`: the EMA teacher's forward on the clean pair (image, text, and the fusion layers up to the masked
    positions; no backward) that the targets of MIM and MRM need, less the teacher work of the reference (none, or
    with `--momentum-distillation` its image and text encoders);
  - `fusion view (Ĩ, T)`: the fusion encoder's forward and backward on all views of the step, less the same without
    the masked-image view (one more row per pair);
  - `masked image`: the student's image encoder on the visible quarter of the patches, forward and backward, and the
    restoring of the masked positions.

The first two are what the losses are: they cannot be cut without changing them. `floor` is the step ratio if
everything else of MAMO's step cost nothing: 1 + (teacher + fusion view) / ITC+ITM+MLM step.
Writes `benchmarks/results/step_breakdown_<size>.json`.
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from ablation import BASE_RUN
from peer_step import SIZES, make_batch, mamo_config

from mamo_hf.modeling_mamo import FusionBatch, MamoForPreTraining, image_mask_to_indices

RESULTS = Path(__file__).parent / "results"
NO_TEACHER_LOSSES = {"mim_weight": 0.0, "mrm_weight": 0.0}
MOMENTUM_DISTILLATION = {"queue_size": 65536, "distill_alpha": 0.4}  # ALBEF's


def demo_models_and_batch(extra: dict) -> tuple[dict[str, MamoForPreTraining], dict[str, torch.Tensor]]:
    """The models (`extra` config fields added) and one batch of the demo recipe (`ablation.py time`'s)."""
    from mamo_hf.data import DemoCaptionDataset, PretrainingCollator
    from mamo_hf.training import PretrainingArguments
    from mamo_hf.training.model import build_model_and_processor

    models = {}
    for name, overrides in (("five objectives", {}), ("ITC+ITM+MLM", NO_TEACHER_LOSSES)):
        torch.manual_seed(0)
        models[name], processor = build_model_and_processor(
            PretrainingArguments(**{**BASE_RUN, "model_config": {**overrides, **extra}})
        )
    dataset = DemoCaptionDataset(BASE_RUN["batch_size"], image_size=BASE_RUN["image_size"])
    batch = PretrainingCollator(processor, 40)([dataset[index] for index in range(len(dataset))])
    return models, batch


def peer_models_and_batch(
    size_name: str, extra: dict
) -> tuple[dict[str, MamoForPreTraining], dict[str, torch.Tensor]]:
    """The models (`extra` config fields added) and the random batch of `peer_step.py` at `size_name`."""
    size = SIZES[size_name]
    models = {}
    for name, overrides in (("five objectives", {}), ("ITC+ITM+MLM", NO_TEACHER_LOSSES)):
        torch.manual_seed(0)
        models[name] = MamoForPreTraining(mamo_config(size, **overrides, **extra))
        models[name].set_attn_implementation("sdpa")
    return models, make_batch(size)


def optimizer_step(model: MamoForPreTraining, batch: dict, optimizer: torch.optim.Optimizer):
    def step():
        model(**batch, generator=torch.Generator().manual_seed(0)).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        model.update_teacher()

    return step


def captured_step(model: MamoForPreTraining, batch: dict):
    """Run the five-objective forward once and keep what the parts are timed on: the masks and the fusion views."""
    captured = {}
    run = FusionBatch.run

    def keep_views(fusion_batch, fusion_model):
        captured["views"] = {name: tuple(t.detach() for t in view) for name, view in fusion_batch.views.items()}
        return run(fusion_batch, fusion_model)

    FusionBatch.run = keep_views
    try:
        encodings = model.encode_views(
            batch["pixel_values"],
            batch["input_ids"],
            batch["attention_mask"],
            generator=torch.Generator().manual_seed(0),
        )
    finally:
        FusionBatch.run = run
    captured["image_mask"], captured["text_mask"] = encodings.image_mask, encodings.text_mask
    return captured


def teacher_forward(model, batch, captured, reference: MamoForPreTraining | None = None):
    """The teacher's forward for the targets of `model`'s objectives, or of `reference`'s."""
    objectives = (reference or model).active_objectives
    targets = (reference or model).teacher_targets(objectives)

    def part():
        if not targets:
            return
        model._encode_teacher(
            batch["pixel_values"],
            batch["input_ids"],
            batch["attention_mask"],
            targets,
            captured["text_mask"],
            captured["image_mask"],
        )

    return part


def fusion_views(model, views: dict):
    """Forward and backward of the fusion encoder on `views` (their states as leaves that need a gradient)."""

    def part():
        fusion_batch = FusionBatch()
        for name, (text, mask, image, text_read, image_read) in views.items():
            fusion_batch.add(name, text.requires_grad_(), mask, image.requires_grad_(), text_read, image_read)
        fused = fusion_batch.run(model.mamo)
        sum(states.sum() for states in fused.values()).backward()

    return part


def masked_image(model, batch, captured):
    visible, _ = image_mask_to_indices(captured["image_mask"])
    pixel_values = batch["pixel_values"]

    def part():
        states = model.mamo.get_image_features(pixel_values, visible_patch_indices=visible).last_hidden_state
        model.mamo.restore_masked_patches(states, visible, pixel_values.shape[-2:]).sum().backward()

    return part


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=("demo", "small"), default="demo")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--momentum-distillation", action="store_true", help="ALBEF's queue and distillation in both")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    extra = MOMENTUM_DISTILLATION if args.momentum_distillation else {}
    models, batch = demo_models_and_batch(extra) if args.size == "demo" else peer_models_and_batch(args.size, extra)
    full = models["five objectives"].train()
    captured = captured_step(full, batch)
    views_without = {name: view for name, view in captured["views"].items() if name != "masked_image"}
    workloads = {
        name: optimizer_step(model.train(), batch, torch.optim.AdamW(model.parameters(), lr=1e-4))
        for name, model in models.items()
    }
    workloads |= {
        "teacher": teacher_forward(full, batch, captured),
        "teacher, reference's targets": teacher_forward(full, batch, captured, reference=models["ITC+ITM+MLM"]),
        "fusion, all views": fusion_views(full, captured["views"]),
        "fusion, without (Ĩ, T)": fusion_views(full, views_without),
        "masked image": masked_image(full, batch, captured),
    }
    seconds = {name: [] for name in workloads}
    for work in workloads.values():
        work()  # warm-up
    for _ in range(args.rounds):
        for name, work in workloads.items():
            started = time.perf_counter()
            work()
            seconds[name].append(time.perf_counter() - started)
        full.zero_grad()
    median = {name: statistics.median(values) for name, values in seconds.items()}
    reference = median["ITC+ITM+MLM"]
    parts = {
        "teacher": median["teacher"] - median["teacher, reference's targets"],
        "fusion view (Ĩ, T)": median["fusion, all views"] - median["fusion, without (Ĩ, T)"],
        "masked image": median["masked image"],
    }
    result = {
        "settings": vars(args) | {"output": None, "threads": 1},
        "seconds": median,
        "step_ratio": median["five objectives"] / reference,
        "extra_share_of_reference": {name: value / reference for name, value in parts.items()},
        "floor": 1 + (parts["teacher"] + parts["fusion view (Ĩ, T)"]) / reference,
    }
    reference_name = "ITC+ITM+MLM" + (", ALBEF's momentum distillation" if args.momentum_distillation else "")
    print(f"| part ({args.size}, one thread) | seconds | share of the {reference_name} step |")
    print("|---|---|---|")
    for name in ("five objectives", "ITC+ITM+MLM"):
        print(f"| step, {name} | {median[name]:.4f} | {median[name] / reference:.2f} |")
    for name, value in parts.items():
        print(f"| {name} | {value:.4f} | {value / reference:.2f} |")
    print(f"step ratio {result['step_ratio']:.2f}, floor {result['floor']:.2f}")
    suffix = "_momentum_distillation" if args.momentum_distillation else ""
    output = args.output or RESULTS / f"step_breakdown_{args.size}{suffix}.json"
    output.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
