"""Pre-train MAMO with `transformers.Trainer` instead of the Accelerate loop of `mamo-hf pretrain`.

`MamoForPreTraining` needs no labels (its losses are computed from the pairs), and `MamoTeacherUpdateCallback`
moves the EMA teacher once per optimizer step. Runs on the built-in demo data by default:

    python examples/pretrain_with_trainer.py --output_dir mamo-trainer-demo --max_steps 200

Every `TrainingArguments` flag works (`--help` lists them with this example's defaults): by default the run logs to
TensorBoard (`<output_dir>/runs`) and keeps a checkpoint every 100 steps; `--resume_from_checkpoint
<output_dir>/checkpoint-N` continues one, `--push_to_hub --hub_model_id you/mamo-pretrained` uploads the model, the
processor and the card. Any `Trainer` launcher works for several GPUs, e.g. `torchrun --nproc_per_node 8
examples/pretrain_with_trainer.py`. (No evaluation set: `Trainer` computes no evaluation loss for a model without
labels whose `forward` takes no `return_loss`.)
"""

from dataclasses import dataclass, field
from pathlib import Path

from trainer_cli import parse_arguments, write_card_and_push
from transformers import Trainer

from mamo_hf import JointMasking, MamoForPreTraining
from mamo_hf.data import DemoCaptionDataset, PretrainingCollator, TrainTransform, tiny_config_and_processor
from mamo_hf.training import MamoTeacherUpdateCallback


@dataclass
class PretrainingExampleArguments:
    """The example's own flags; every `TrainingArguments` flag works too."""

    image_size: int = field(default=64, metadata={"help": "image side in pixels"})
    patch_size: int = field(default=16, metadata={"help": "patch side in pixels"})
    train_pairs: int = field(default=20000, metadata={"help": "generated training pairs"})


# The example's choices for `TrainingArguments`.
TRAINING_DEFAULTS = {
    "output_dir": "mamo-trainer-demo",
    "max_steps": 200,
    "per_device_train_batch_size": 32,
    "learning_rate": 1e-3,
    "lr_scheduler_type": "cosine",
    "warmup_steps": 0.1,  # a fraction of the total steps
    "weight_decay": 0.02,
    "logging_steps": 10,
    "save_strategy": "steps",
    "save_steps": 100,
}


def main():
    args, training_args = parse_arguments(PretrainingExampleArguments, __doc__, TRAINING_DEFAULTS)
    size = args.image_size
    config, processor = tiny_config_and_processor(size, patch_size=args.patch_size)
    seed = training_args.seed
    train = DemoCaptionDataset(args.train_pairs, seed=seed, image_size=size, transform=TrainTransform(size))
    model = MamoForPreTraining(config)
    # The collator draws each pair's masks from its key, as `mamo-hf pretrain` does.
    collator = PretrainingCollator(processor, masking=JointMasking.from_config(config))

    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train,
        data_collator=collator,
        processing_class=processor,
        callbacks=[MamoTeacherUpdateCallback()],
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model()
    trainer.save_state()
    write_card_and_push(
        trainer,
        model_name=Path(training_args.output_dir).name,
        summary="MAMO pre-trained (ITC, ITM, MLM, MIM, MRM) on generated demo pairs with `transformers.Trainer`, by "
        "`examples/pretrain_with_trainer.py`.",
        datasets=["mamo_hf generated scenes"],
        training={
            "steps": trainer.state.global_step,
            "learning_rate": training_args.learning_rate,
            "batch_size_per_device": training_args.per_device_train_batch_size,
            "image_size": size,
        },
    )


if __name__ == "__main__":
    main()
