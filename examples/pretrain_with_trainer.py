"""Pre-train MAMO with `transformers.Trainer` instead of the Accelerate loop of `mamo-hf pretrain`.

`MamoForPreTraining` needs no labels (its losses are computed from the pairs), and `MamoTeacherUpdateCallback`
moves the EMA teacher once per optimizer step. Runs on the built-in demo data by default:

    python examples/pretrain_with_trainer.py --output-dir mamo-trainer-demo --max-steps 200

Any `TrainingArguments` launcher works for several GPUs, e.g. `torchrun --nproc_per_node 8 examples/...`.
"""

import argparse

from transformers import Trainer, TrainingArguments

from mamo_hf import MamoConfig, MamoForPreTraining, MamoImageProcessorPil, MamoProcessor
from mamo_hf.configuration_mamo import special_token_ids
from mamo_hf.data import DemoCaptionDataset, PretrainingCollator, TrainTransform, demo_tokenizer
from mamo_hf.training import MamoTeacherUpdateCallback


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default="mamo-trainer-demo")
    parser.add_argument("--max-steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--gradient-accumulation-steps", type=int, default=1)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--image-size", type=int, default=64)
    args = parser.parse_args()

    tokenizer = demo_tokenizer()
    size = args.image_size
    processor = MamoProcessor(
        image_processor=MamoImageProcessorPil(size={"height": size, "width": size}), tokenizer=tokenizer
    )
    config = MamoConfig.tiny(
        vocab_size=len(tokenizer), special_token_ids=special_token_ids(tokenizer), image_size=size, patch_size=16
    )
    dataset = DemoCaptionDataset(20000, seed=0, image_size=size, transform=TrainTransform(size))
    collator = PretrainingCollator(processor)

    def collate(items):
        batch = collator(items)
        batch.pop("skipped")  # the bad-record report is for logging, not a model input
        return batch

    training_args = TrainingArguments(
        output_dir=args.output_dir,
        per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        max_steps=args.max_steps,
        learning_rate=args.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=min(100, args.max_steps // 10),
        weight_decay=0.02,
        logging_steps=20,
        save_steps=100,
        remove_unused_columns=False,  # the collator turns images and captions into model inputs
        report_to=[],
    )
    trainer = Trainer(
        model=MamoForPreTraining(config),
        args=training_args,
        train_dataset=dataset,
        data_collator=collate,
        processing_class=processor,
        callbacks=[MamoTeacherUpdateCallback()],
    )
    trainer.train()
    trainer.save_model(args.output_dir)


if __name__ == "__main__":
    main()
