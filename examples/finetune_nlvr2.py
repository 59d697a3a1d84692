"""Fine-tune MAMO for NLVR2 (is a statement true of a pair of images?) with `transformers.Trainer`.

On CPU, by default: the generated count-comparison task of `mamo_hf.data.nlvr2` ("the left image has more red
objects than the right image"; chance 50 %), starting from the `mamo-hf demo` model or from a tiny MAMO from scratch:

    mamo-hf demo                                                   # pre-trains ./mamo-demo (about 4 minutes)
    python examples/finetune_nlvr2.py --init mamo-demo --output-dir nlvr2-demo

On this project's 2-core CPU (4 epochs of 12,000 pairs, 1,500 steps, lr 1e-4): 99.8 % test accuracy from the demo
model in 95 s, but 49.8 % (chance) from scratch in 105 s: counting colours in two images and comparing them is
learnt on top of pre-trained alignment, not from the binary label alone. A learning rate of 1e-3 also leaves the
demo model at chance (47.8 %).

Full size (the paper's protocol; GPUs): start from a pre-trained MAMO-base, NLVR2 in ALBEF's JSON format, 384 px,
`MamoForVisualReasoning` on (image 1, text) and (image 2, text); ALBEF fine-tunes 10 epochs at lr 2e-5:

    accelerate launch --config_file examples/configs/accelerate_ddp.yaml examples/finetune_nlvr2.py \
        --init mamo-4m --train-file nlvr_train.json --test-file nlvr_dev.json --image-root /data/nlvr2 \
        --image-size 384 --epochs 10 --learning-rate 2e-5 --batch-size 16 --output-dir mamo-nlvr2

Metrics (accuracy on the test file, wall time, configuration) are written to `<output-dir>/metrics.json`.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from transformers import Trainer, TrainingArguments

from mamo_hf import MamoConfig, MamoForVisualReasoning, MamoImageProcessorPil, MamoProcessor
from mamo_hf.configuration_mamo import special_token_ids
from mamo_hf.data.demo import demo_tokenizer
from mamo_hf.data.nlvr2 import CountComparisonDataset, NLVR2Collator, NLVR2Dataset
from mamo_hf.hub import MeasuredResult, finish_run


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--init", help="MAMO checkpoint to start from (default: a tiny MAMO from scratch)")
    parser.add_argument("--train-file", help="NLVR2 JSON (default: the generated task)")
    parser.add_argument("--test-file", help="NLVR2 JSON for evaluation")
    parser.add_argument("--image-root", help="folder of the images of the JSON files")
    parser.add_argument("--train-samples", type=int, default=12000, help="generated training pairs")
    parser.add_argument("--test-samples", type=int, default=1000, help="generated test pairs")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=float, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--push-to-hub", action="store_true", help="upload the model, processor and card")
    parser.add_argument("--hub-model-id", help="repository for --push-to-hub, e.g. you/mamo-retrieval")
    parser.add_argument("--output-dir", default="nlvr2-demo")
    return parser.parse_args()


def build_model_and_processor(args):
    if args.init:
        return MamoForVisualReasoning.from_pretrained(args.init), MamoProcessor.from_pretrained(args.init)
    tokenizer = demo_tokenizer()
    config = MamoConfig.tiny(
        vocab_size=len(tokenizer),
        special_token_ids=special_token_ids(tokenizer),
        image_size=args.image_size,
        patch_size=args.image_size // 4,
    )
    torch.manual_seed(args.seed)
    size = {"height": args.image_size, "width": args.image_size}
    return MamoForVisualReasoning(config), MamoProcessor(MamoImageProcessorPil(size=size), tokenizer)


def accuracy(prediction) -> dict:
    return {"accuracy": 100.0 * float(np.mean(prediction.predictions.argmax(-1) == prediction.label_ids))}


def main():
    args = parse_arguments()
    model, processor = build_model_and_processor(args)
    if args.train_file:
        train = NLVR2Dataset(args.train_file, args.image_root)
        test = NLVR2Dataset(args.test_file, args.image_root)
    else:
        train = CountComparisonDataset(args.train_samples, seed=args.seed, image_size=args.image_size)
        test = CountComparisonDataset(args.test_samples, seed=args.seed + 1, image_size=args.image_size)
    training_args = TrainingArguments(
        output_dir=args.output_dir,
        num_train_epochs=args.epochs,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=64,
        learning_rate=args.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=0.05,  # a fraction of the total steps
        weight_decay=0.02,
        logging_steps=50,
        save_strategy="no",
        remove_unused_columns=False,  # the collator turns images and sentences into model inputs
        report_to=[],
        seed=args.seed,
        dataloader_num_workers=0,
    )
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
    trainer.train()
    metrics = trainer.evaluate()
    metrics.update(
        train_seconds=round(time.perf_counter() - started, 1),
        steps=trainer.state.global_step,
        train_pairs=len(train),
        test_pairs=len(test),
        chance_accuracy=50.0,
        arguments=vars(args),
    )
    trainer.save_model(args.output_dir)
    Path(args.output_dir, "metrics.json").write_text(json.dumps(metrics, indent=2))
    data = Path(args.test_file).stem if args.test_file else "generated count comparisons"
    finish_run(
        args.output_dir,
        hub_model_id=args.hub_model_id if args.push_to_hub else None,
        model_name=Path(args.output_dir).name,
        summary="MAMO fine-tuned for NLVR2-style visual reasoning over image pairs with `examples/finetune_nlvr2.py`.",
        results=[MeasuredResult("visual-reasoning", data, "accuracy", round(metrics["eval_accuracy"], 2))],
        datasets=[Path(args.train_file).stem if args.train_file else "mamo_hf generated count comparisons"],
        base_model=args.init,
        training={
            "steps": metrics["steps"],
            "epochs": args.epochs,
            "learning_rate": args.learning_rate,
            "batch_size": args.batch_size,
            "image_size": args.image_size,
            "seconds": metrics["train_seconds"],
        },
    )
    print(
        f"NLVR2 test accuracy {metrics['eval_accuracy']:.1f} % (chance 50 %) after {metrics['steps']} steps, "
        f"{metrics['train_seconds']:.0f} s; metrics in {args.output_dir}/metrics.json"
    )


if __name__ == "__main__":
    main()
