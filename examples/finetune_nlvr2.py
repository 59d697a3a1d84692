"""Fine-tune MAMO for NLVR2 (is a statement true of a pair of images?) with `transformers.Trainer`.

On CPU, by default: the generated count-comparison task of `mamo_hf.data.nlvr2` ("the left image has more red
objects than the right image"; chance 50 %), starting from the `mamo-hf demo` model or from a tiny MAMO from scratch:

    mamo-hf demo                                                   # pre-trains ./mamo-demo (about 4 minutes)
    python examples/finetune_nlvr2.py --init mamo-demo --output_dir nlvr2-demo

On this project's 2-core CPU (4 epochs of 12,000 pairs, 1,500 steps, lr 1e-4): 99.8 % test accuracy from the demo
model in 95 s, but 49.8 % (chance) from scratch in 105 s: counting colours in two images and comparing them is
learnt on top of pre-trained alignment, not from the binary label alone. A learning rate of 1e-3 also leaves the
demo model at chance (47.8 %).

Full size (the paper's protocol; GPUs): start from a pre-trained MAMO-base, NLVR2 in ALBEF's JSON format, 384 px,
`MamoForVisualReasoning` on (image 1, text) and (image 2, text); ALBEF fine-tunes 10 epochs at lr 2e-5:

    accelerate launch --config_file examples/configs/accelerate_ddp.yaml examples/finetune_nlvr2.py \
        --init mamo-4m --train_file nlvr_train.json --test_file nlvr_dev.json --image_root /data/nlvr2 \
        --image_size 384 --num_train_epochs 10 --learning_rate 2e-5 --per_device_train_batch_size 16 \
        --output_dir mamo-nlvr2

Every `TrainingArguments` flag works (`--help` lists them with this example's defaults): by default the run logs to
TensorBoard (`<output_dir>/runs`) and keeps a checkpoint at each epoch's end; `--resume_from_checkpoint
<output_dir>/checkpoint-N` continues one, `--eval_strategy epoch` logs the test accuracy during training,
`--push_to_hub --hub_model_id you/mamo-nlvr2` uploads the model, the processor and the card.

Metrics (accuracy on the test file, wall time, configuration) are written to `<output_dir>/metrics.json`.
"""

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from trainer_cli import parse_arguments, reading, scratch_patch_problem, write_card_and_push
from transformers import Trainer

from mamo_hf import MamoForVisualReasoning, MamoProcessor
from mamo_hf.data import tiny_config_and_processor
from mamo_hf.data.nlvr2 import CountComparisonDataset, NLVR2Collator, NLVR2Dataset
from mamo_hf.hub import MeasuredResult


@dataclass
class NLVR2Arguments:
    """The example's own flags; every `TrainingArguments` flag works too."""

    init: str | None = field(
        default=None, metadata={"help": "MAMO checkpoint to start from (default: a tiny MAMO from scratch)"}
    )
    train_file: str | None = field(default=None, metadata={"help": "NLVR2 JSON (default: the generated task)"})
    test_file: str | None = field(default=None, metadata={"help": "NLVR2 JSON for evaluation"})
    image_root: str | None = field(
        default=None,
        metadata={"help": "folder the image paths of the JSON files start from (default: each file's folder)"},
    )
    train_samples: int = field(default=12000, metadata={"help": "generated training pairs"})
    test_samples: int = field(default=1000, metadata={"help": "generated test pairs"})
    image_size: int = field(default=64, metadata={"help": "image side in pixels (of a model from scratch)"})


# A model from scratch cuts its images into 4 × 4 patches.
PATCHES_PER_SIDE = 4

# The example's choices for `TrainingArguments` (the generated-task run documented above).
TRAINING_DEFAULTS = {
    "output_dir": "nlvr2-demo",
    "num_train_epochs": 4,
    "per_device_train_batch_size": 32,
    "per_device_eval_batch_size": 64,
    "learning_rate": 1e-4,
    "lr_scheduler_type": "cosine",
    "warmup_steps": 0.05,  # a fraction of the total steps
    "weight_decay": 0.02,
    "logging_steps": 25,
}


def build_model_and_processor(args: NLVR2Arguments, seed: int):
    if args.init:
        return MamoForVisualReasoning.from_pretrained(args.init), MamoProcessor.from_pretrained(args.init)
    config, processor = tiny_config_and_processor(args.image_size, patch_size=args.image_size // PATCHES_PER_SIDE)
    torch.manual_seed(seed)
    return MamoForVisualReasoning(config), processor


def accuracy(prediction) -> dict:
    return {"accuracy": 100.0 * float(np.mean(prediction.predictions.argmax(-1) == prediction.label_ids))}


def main():
    args, training_args = parse_arguments(
        NLVR2Arguments,
        __doc__,
        TRAINING_DEFAULTS,
        check=lambda args: scratch_patch_problem(args.image_size, PATCHES_PER_SIDE, args.init),
    )
    model, processor = build_model_and_processor(args, training_args.seed)
    if args.train_file:
        with reading("--train_file/--test_file"):
            train = NLVR2Dataset(args.train_file, args.image_root)
            test = NLVR2Dataset(args.test_file, args.image_root)
    else:
        seed = training_args.seed
        train = CountComparisonDataset(args.train_samples, seed=seed, image_size=args.image_size)
        test = CountComparisonDataset(args.test_samples, seed=seed + 1, image_size=args.image_size)
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train,
        eval_dataset=test,
        data_collator=NLVR2Collator(processor),
        processing_class=processor,
        compute_metrics=accuracy,
    )
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    metrics = trainer.evaluate()
    metrics.update(
        train_seconds=round(time.perf_counter() - started, 1),
        steps=trainer.state.global_step,
        train_pairs=len(train),
        test_pairs=len(test),
        chance_accuracy=50.0,
        arguments=asdict(args),
        training_arguments=training_args.to_dict(),
    )
    trainer.save_model()
    trainer.save_state()
    output_dir = Path(training_args.output_dir)
    if trainer.is_world_process_zero():
        (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    data = Path(args.test_file).stem if args.test_file else "generated count comparisons"
    write_card_and_push(
        trainer,
        model_name=output_dir.name,
        summary="MAMO fine-tuned for NLVR2-style visual reasoning over image pairs with `examples/finetune_nlvr2.py`.",
        results=[MeasuredResult("visual-reasoning", data, "accuracy", round(metrics["eval_accuracy"], 2))],
        datasets=[Path(args.train_file).stem if args.train_file else "mamo_hf generated count comparisons"],
        base_model=args.init,
        training={
            "steps": metrics["steps"],
            "epochs": training_args.num_train_epochs,
            "learning_rate": training_args.learning_rate,
            "batch_size_per_device": training_args.per_device_train_batch_size,
            "image_size": args.image_size,
            "seconds": metrics["train_seconds"],
        },
    )
    print(
        f"NLVR2 test accuracy {metrics['eval_accuracy']:.1f} % (chance 50 %) after {metrics['steps']} steps, "
        f"{metrics['train_seconds']:.0f} s; metrics in {output_dir}/metrics.json"
    )


if __name__ == "__main__":
    main()
