# Copyright 2026 The mamo_hf authors. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""MAMO pre-training on Accelerate: one CPU, one GPU, many GPUs, many nodes.

`pretrain(PretrainingArguments(...))` is the loop behind `mamo-hf pretrain` and `examples/pretrain.py`: AdamW without
decay on biases and norms, cosine schedule with warm-up to a floor, gradient accumulation with one teacher update
per optimizer step, mixed precision, gradient clipping, atomic checkpoints with exact resume, TensorBoard and CSV
logs, and zero-shot retrieval before and after training. For `Trainer`, use `MamoTeacherUpdateCallback`.
"""

import csv
import dataclasses
import json
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.tracking import GeneralTracker
from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration, set_seed
from torch.utils.data import DataLoader, Sampler
from transformers import TrainerCallback, get_cosine_with_min_lr_schedule_with_warmup
from transformers.utils import logging

from .hub import finish_run
from .modeling_mamo import OBJECTIVES

logger = logging.get_logger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"

TRAINING_STATE = "training_state.json"


class MamoTeacherUpdateCallback(TrainerCallback):
    """Give `Trainer` MAMO's EMA teacher: one `update_teacher()` after every optimizer step.

    With gradient accumulation the teacher moves once per optimizer step, not once per micro-batch, as in the paper.

    Example:

    ```python
    >>> trainer = Trainer(model=MamoForPreTraining(config), args=args, train_dataset=dataset,
    ...                   data_collator=collator, callbacks=[MamoTeacherUpdateCallback()])
    ```
    """

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        """One EMA update of the teacher after each optimizer step (not after each accumulated micro-batch)."""
        model.update_teacher()


@dataclass
class PretrainingArguments:
    """Everything a pre-training run needs; `mamo-hf pretrain` exposes each field as a flag or a YAML key."""

    # Model
    model: str = field(default="tiny", metadata={"help": "preset when --init is not given: tiny or base"})
    init: str | None = field(
        default=None, metadata={"help": "folder of a MAMO checkpoint to start from (e.g. from `mamo-hf init-base`)"}
    )
    tokenizer: str | None = field(
        default=None,
        metadata={"help": "tokenizer folder for a preset (default: the built-in demo tokenizer, tiny only)"},
    )
    model_config: dict = field(
        default_factory=dict, metadata={"help": "MamoConfig fields to override, e.g. {'mim_weight': 0.5}"}
    )
    image_size: int | None = field(default=None, metadata={"help": "training resolution (default: the model's)"})
    # Data
    train_file: list[str] = field(
        default_factory=list, metadata={"help": "caption JSON/JSONL/CSV files (empty: the built-in demo data)"}
    )
    image_root: str | None = field(default=None, metadata={"help": "folder that relative image paths start from"})
    hf_dataset: str | None = field(default=None, metadata={"help": "a local `datasets` folder (load_from_disk)"})
    image_column: str = field(default="image", metadata={"help": "image column of --hf-dataset"})
    text_column: str = field(default="caption", metadata={"help": "text column of --hf-dataset"})
    streaming: bool = field(default=False, metadata={"help": "read --train-file line by line (needs --max-steps)"})
    demo_pairs: int = field(default=20000, metadata={"help": "size of the built-in demo training set"})
    demo_max_objects: int = field(default=3, metadata={"help": "objects per demo scene (1 to 3)"})
    demo_minimal_pairs: float = field(
        default=0.0,
        metadata={
            "help": "fraction of the demo data served as minimal pairs: a scene batched with a copy in which two "
            "objects exchange one attribute (hard negatives that differ only in binding); 0 = off"
        },
    )
    eval_pairs: int = field(default=200, metadata={"help": "held-out demo pairs for zero-shot retrieval (0: none)"})
    eval_file: str | None = field(default=None, metadata={"help": "held-out caption file for zero-shot retrieval"})
    augment: bool = field(default=True, metadata={"help": "random resized crop and left/right-aware flip"})
    max_length: int = field(default=40, metadata={"help": "token limit of a caption"})
    max_words: int = field(default=30, metadata={"help": "word limit of a cleaned caption"})
    strict: bool = field(default=False, metadata={"help": "fail on the first bad record instead of skipping it"})
    num_workers: int = field(default=2, metadata={"help": "DataLoader workers per process"})
    # Optimisation
    batch_size: int = field(default=32, metadata={"help": "pairs per process per micro-batch"})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "micro-batches per optimizer step"})
    epochs: int = field(default=1, metadata={"help": "passes over the data (ignored with --max-steps)"})
    max_steps: int | None = field(default=None, metadata={"help": "optimizer steps (overrides --epochs)"})
    learning_rate: float = field(default=1e-4, metadata={"help": "peak learning rate"})
    min_learning_rate: float = field(default=1e-5, metadata={"help": "floor of the cosine decay"})
    warmup_steps: int = field(default=1000, metadata={"help": "linear warm-up steps"})
    weight_decay: float = field(default=0.02, metadata={"help": "AdamW weight decay (not on biases and norms)"})
    max_grad_norm: float = field(default=5.0, metadata={"help": "gradient clipping (0: off)"})
    mixed_precision: str = field(default="no", metadata={"help": "no, bf16 or fp16"})
    seed: int = field(default=42, metadata={"help": "seed of the initialisation, the data order and the masks"})
    cpu: bool = field(default=False, metadata={"help": "run on CPU even where a GPU exists"})
    # Output
    output_dir: str = field(default="mamo-pretrain", metadata={"help": "checkpoints, logs and the final model"})
    checkpoint_every: int = field(default=1000, metadata={"help": "steps between checkpoints (0: none)"})
    save_total_limit: int = field(default=2, metadata={"help": "checkpoints kept (older ones are deleted)"})
    resume: str | None = field(default=None, metadata={"help": "'latest' or a checkpoint folder to continue from"})
    log_every: int = field(default=10, metadata={"help": "steps between log lines"})
    report_to: list[str] = field(
        default_factory=lambda: ["tensorboard", "csv"], metadata={"help": "trackers: tensorboard, csv"}
    )
    eval_k: int = field(default=16, metadata={"help": "candidates re-ranked by ITM in the retrieval evaluation"})
    push_to_hub: bool = field(default=False, metadata={"help": "upload the final model, processor and card"})
    hub_model_id: str | None = field(default=None, metadata={"help": "repository for --push-to-hub (user/name)"})


# ----------------------------------------------------------------------------------------------------------------
# Logging
# ----------------------------------------------------------------------------------------------------------------


class CSVTracker(GeneralTracker):
    """An Accelerate tracker that appends every logged value to `<logging_dir>/metrics.csv` (`step, name, value`)."""

    name = "csv"
    requires_logging_directory = True
    main_process_only = True

    def __init__(self, run_name: str, logging_dir: str | os.PathLike):
        super().__init__()
        self.path = Path(logging_dir) / run_name / "metrics.csv"
        self.path.parent.mkdir(parents=True, exist_ok=True)

    @property
    def tracker(self):
        return self.path

    def store_init_configuration(self, values: dict):
        (self.path.parent / "config.json").write_text(json.dumps(values, indent=2, default=str))

    def log(self, values: dict, step: int | None = None, **kwargs):
        is_new = not self.path.exists()
        with self.path.open("a", newline="") as handle:
            writer = csv.writer(handle)
            if is_new:
                writer.writerow(["step", "name", "value"])
            writer.writerows([step, name, value] for name, value in values.items())


def _trackers(report_to: list[str], output_dir: str) -> list:
    trackers = []
    for name in report_to:
        if name == "csv":
            trackers.append(CSVTracker("mamo", Path(output_dir) / "logs"))
        elif name == "tensorboard":
            from transformers.integrations import is_tensorboard_available

            if is_tensorboard_available():
                trackers.append("tensorboard")
            else:
                logger.warning("TensorBoard is not installed: metrics go to the CSV log only.")
        else:
            raise ValueError(f"Unknown tracker {name!r} in `report_to`: use tensorboard and/or csv.")
    return trackers


# ----------------------------------------------------------------------------------------------------------------
# Model, data, optimiser
# ----------------------------------------------------------------------------------------------------------------


def build_model_and_processor(args: PretrainingArguments):
    """`MamoForPreTraining` and `MamoProcessor` from `--init`, or a freshly initialised preset."""
    from .configuration_mamo import MamoConfig, special_token_ids
    from .data.demo import demo_tokenizer
    from .image_processing_mamo import MamoImageProcessorPil
    from .modeling_mamo import MamoForPreTraining
    from .processing_mamo import MamoProcessor

    if args.init is not None:
        model = MamoForPreTraining.from_pretrained(args.init, dtype=torch.float32, **args.model_config)
        processor = MamoProcessor.from_pretrained(args.init)
    else:
        if args.tokenizer is None and args.model != "tiny":
            raise ValueError("A `base` model needs `--tokenizer` (or start from `--init`, see `mamo-hf init-base`).")
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer) if args.tokenizer else demo_tokenizer()
        text_ids = {"vocab_size": len(tokenizer), **special_token_ids(tokenizer)}
        if args.model == "tiny":
            config = MamoConfig.tiny(
                special_token_ids=special_token_ids(tokenizer),
                vocab_size=len(tokenizer),
                image_size=args.image_size or 64,
                patch_size=16,
                **args.model_config,
            )
        elif args.model == "base":
            config = MamoConfig.mamo_base(**args.model_config)
            config.text_config.update(text_ids)
        else:
            raise ValueError(f"Unknown `model` preset {args.model!r}: use tiny or base, or --init.")
        set_seed(args.seed)
        model = MamoForPreTraining(config)
        size = config.vision_config.image_size
        processor = MamoProcessor(
            image_processor=MamoImageProcessorPil(size={"height": size, "width": size}), tokenizer=tokenizer
        )
    if args.image_size is not None:
        processor.image_processor.size = {"height": args.image_size, "width": args.image_size}
    return model, processor


def build_train_dataset(args: PretrainingArguments, image_size: int):
    """The training pairs: caption files, a local `datasets` folder, a stream, or the built-in demo data."""
    from .data import CaptionDataset, DemoCaptionDataset, HFCaptionDataset, StreamingCaptionDataset, TrainTransform

    if not 0 <= args.demo_minimal_pairs <= 1:
        raise ValueError(f"`--demo-minimal-pairs` is a fraction in [0, 1], got {args.demo_minimal_pairs}.")
    if args.demo_minimal_pairs and (args.train_file or args.hf_dataset or args.batch_size % 2):
        raise ValueError(
            "`--demo-minimal-pairs` applies to the built-in demo data only and needs an even `--batch-size` (each "
            f"batch holds whole pairs); got batch size {args.batch_size}"
            + (" and a --train-file/--hf-dataset." if args.train_file or args.hf_dataset else ".")
        )
    transform = TrainTransform(image_size) if args.augment else None
    common = {"transform": transform, "max_words": args.max_words, "seed": args.seed}
    if args.hf_dataset:
        import datasets

        return HFCaptionDataset(
            datasets.load_from_disk(args.hf_dataset), args.image_column, args.text_column, strict=args.strict, **common
        )
    if args.train_file and args.streaming:
        if args.max_steps is None:
            raise ValueError("A streaming run is step-based: give `--max-steps`.")
        return StreamingCaptionDataset(args.train_file, args.image_root, strict=args.strict, **common)
    if args.train_file:
        return CaptionDataset(args.train_file, args.image_root, strict=args.strict, **common)
    return DemoCaptionDataset(
        args.demo_pairs,
        seed=args.seed,
        image_size=image_size,
        max_objects=args.demo_max_objects,
        transform=transform,
        max_words=args.max_words,
        minimal_pairs=args.demo_minimal_pairs,
    )


def held_out_pairs(args: PretrainingArguments, image_size: int):
    """Held-out `(images, captions, image_to_texts, text_to_image)` for zero-shot retrieval, or `None`."""
    from .data import CaptionDataset, DemoCaptionDataset

    if args.eval_file:
        dataset = CaptionDataset([args.eval_file], args.image_root, max_words=args.max_words)
    elif args.eval_pairs > 0 and not (args.train_file or args.hf_dataset):
        dataset = DemoCaptionDataset(
            args.eval_pairs,
            seed=args.seed + 1_000_003,
            image_size=image_size,
            max_objects=args.demo_max_objects,
            max_words=args.max_words,
        )
    else:
        return None
    items = [dataset[index] for index in range(len(dataset))]
    image_index, images, image_to_texts, text_to_image = {}, [], [], []
    for text_index, item in enumerate(items):
        if item["image_id"] not in image_index:
            image_index[item["image_id"]] = len(images)
            images.append(item["image"])
            image_to_texts.append([])
        image_to_texts[image_index[item["image_id"]]].append(text_index)
        text_to_image.append(image_index[item["image_id"]])
    return images, [item["caption"] for item in items], image_to_texts, text_to_image


class EpochShuffleSampler(Sampler):
    """A permutation per epoch from `seed + epoch`: the data order is a function of the epoch, so a resumed run
    sees exactly the batches the uninterrupted run would have seen. With `block_size = k`, blocks of k consecutive
    indices are shuffled and kept together (minimal pairs stay in one batch when the batch size is a multiple of k);
    a last incomplete block is left out."""

    def __init__(self, size: int, seed: int, block_size: int = 1):
        self.size, self.seed, self.epoch, self.block_size = size, seed, 0, block_size

    def set_epoch(self, epoch: int):
        """Use the permutation of epoch `epoch` from now on."""
        self.epoch = epoch

    def __len__(self):
        return self.size // self.block_size * self.block_size

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        blocks = torch.randperm(self.size // self.block_size, generator=generator)
        return iter((blocks[:, None] * self.block_size + torch.arange(self.block_size)).flatten().tolist())


def optimizer_parameter_groups(model, weight_decay: float) -> list[dict]:
    """AdamW groups: decay on weight matrices only; biases, norms, embeddings' 1-D tensors and the temperature
    are not decayed. The teacher (no gradient) is left out."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        is_norm_or_bias = parameter.ndim < 2 or "layernorm" in name or name.endswith(".bias")
        (no_decay if is_norm_or_bias else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def step_generator(seed: int, micro_step: int, device: torch.device) -> torch.Generator:
    """The source of one micro-batch's hard-negative draws: a function of (seed, micro-step), the same on every rank
    (each rank draws for the whole global batch and keeps its rows), so resuming needs no generator state."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seed * 1_000_003 + micro_step)
    return generator


# ----------------------------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------------------------


def save_checkpoint(accelerator: Accelerator, output_dir: Path, state: dict, save_total_limit: int) -> Path:
    """Write `checkpoint-<step>` atomically: everything goes to a temporary folder, renamed once complete, so an
    interrupted save never replaces (or looks like) the last good checkpoint."""
    final = output_dir / f"{CHECKPOINT_PREFIX}{state['step']}"
    staging = output_dir / f".{final.name}.tmp"
    if accelerator.is_main_process and staging.exists():
        shutil.rmtree(staging)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging))
    if accelerator.is_main_process:
        (staging / TRAINING_STATE).write_text(json.dumps(state, indent=2))
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
        for old in list_checkpoints(output_dir)[:-save_total_limit] if save_total_limit > 0 else []:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    found = [path for path in Path(output_dir).glob(f"{CHECKPOINT_PREFIX}*") if (path / TRAINING_STATE).exists()]
    return sorted(found, key=lambda path: int(path.name.removeprefix(CHECKPOINT_PREFIX)))


def _end_training(accelerator: Accelerator) -> None:
    """Wait for every rank, then close the trackers and the process group.

    Under gloo, gloo's worker threads first get the GIL for a moment: a thread that frees a finished collective needs
    it for the collective's Python-owned tensors, and if the process group is destroyed meanwhile (when the DDP
    wrapper goes; the destructor joins those threads while holding the GIL) the process deadlocks. Seen at the end
    of 2-process CPU runs with torch 2.13.
    """
    accelerator.wait_for_everyone()
    if torch.distributed.is_initialized() and torch.distributed.get_backend() == "gloo":
        time.sleep(0.2)
    accelerator.end_training()


def resolve_resume(resume: str, output_dir: Path) -> Path:
    """The checkpoint folder `--resume` names: "latest" (the newest complete checkpoint of `output_dir`) or a path."""
    if resume == "latest":
        checkpoints = list_checkpoints(output_dir)
        if not checkpoints:
            raise FileNotFoundError(f"`--resume latest`: no complete checkpoint in {output_dir}.")
        return checkpoints[-1]
    path = Path(resume)
    if not (path / TRAINING_STATE).exists():
        raise FileNotFoundError(f"`--resume {resume}`: not a complete checkpoint (no {TRAINING_STATE}).")
    return path


# ----------------------------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------------------------


def evaluate_zero_shot(model, processor, held_out, k: int) -> dict:
    """Zero-shot retrieval (ITC, and ITM re-ranked) on held-out pairs."""
    from .evaluation.retrieval import evaluate_retrieval

    was_training = model.training
    images, captions, image_to_texts, text_to_image = held_out
    metrics = evaluate_retrieval(model, processor, images, captions, image_to_texts, text_to_image, k=k)
    model.train(was_training)
    return metrics


def _retrieval_line(metrics: dict) -> str:
    return "  ".join(
        f"{kind.upper()}: TR R@1 {values['txt_r1']:.1f} R@5 {values['txt_r5']:.1f} | IR R@1 {values['img_r1']:.1f} "
        f"R@5 {values['img_r5']:.1f}"
        for kind, values in metrics.items()
    )


@dataclass
class PretrainingResult:
    """What `pretrain` returns: the trained model and its processor (also saved to `output_dir`), and a summary
    (steps, last losses, zero-shot retrieval before and after, skipped records, seconds), saved as
    `pretraining_summary.json`."""

    model: "MamoForPreTraining"  # noqa: F821
    processor: "MamoProcessor"  # noqa: F821
    summary: dict


def pretrain(args: PretrainingArguments) -> PretrainingResult:
    """Run MAMO pre-training (see the module docstring)."""
    from .data import PretrainingCollator

    output_dir = Path(args.output_dir)
    # The queue is updated identically on every rank: no buffer broadcast. With an objective switched off, some
    # parameters get no gradient, which DDP must be told.
    some_weight_is_zero = any(args.model_config.get(f"{name}_weight", 1.0) == 0 for name in OBJECTIVES)
    ddp_options = DistributedDataParallelKwargs(broadcast_buffers=False, find_unused_parameters=some_weight_is_zero)
    accelerator = Accelerator(
        kwargs_handlers=[ddp_options],
        cpu=args.cpu,
        mixed_precision=args.mixed_precision,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        log_with=_trackers(args.report_to, args.output_dir),
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
    )
    set_seed(args.seed)
    model, processor = build_model_and_processor(args)
    image_size = processor.image_processor.size["height"]
    dataset = build_train_dataset(args, image_size)
    is_stream = isinstance(dataset, torch.utils.data.IterableDataset)
    block_size = 2 if getattr(dataset, "minimal_pairs", 0) > 0 else 1
    sampler = None if is_stream else EpochShuffleSampler(len(dataset), args.seed, block_size)
    loader = DataLoader(
        dataset,
        batch_size=args.batch_size,
        sampler=sampler,
        collate_fn=PretrainingCollator(processor, args.max_length),
        num_workers=args.num_workers,
        drop_last=True,
    )
    optimizer = torch.optim.AdamW(optimizer_parameter_groups(model, args.weight_decay), lr=args.learning_rate)
    steps_per_epoch = (
        None if is_stream else len(loader) // (args.gradient_accumulation_steps * accelerator.num_processes)
    )
    total_steps = args.max_steps or args.epochs * steps_per_epoch
    if not total_steps:
        raise ValueError(f"Nothing to train: {len(dataset)} pairs make no full batch of {args.batch_size}.")
    scheduler = get_cosine_with_min_lr_schedule_with_warmup(
        optimizer, min(args.warmup_steps, total_steps), total_steps, min_lr=args.min_learning_rate
    )
    # The schedule counts optimizer steps whatever the number of processes: it is stepped by hand below, not through
    # `prepare` (which would step it once per process), and registered so that checkpoints hold its state.
    # A stream shards itself over ranks and workers, so its loader is not prepared (Accelerate would shard it again).
    if is_stream:
        model, optimizer = accelerator.prepare(model, optimizer)
    else:
        model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    accelerator.register_for_checkpointing(scheduler)
    unwrapped = accelerator.unwrap_model(model)

    state = {"step": 0, "micro_step": 0, "epoch": 0, "batches_in_epoch": 0, "skipped": {}}
    if args.resume:
        checkpoint = resolve_resume(args.resume, output_dir)
        accelerator.load_state(str(checkpoint))
        state = json.loads((checkpoint / TRAINING_STATE).read_text())
        accelerator.print(f"Resumed from {checkpoint} at step {state['step']}.")
    accelerator.init_trackers("mamo", config={k: str(v) for k, v in dataclasses.asdict(args).items()})

    held_out = held_out_pairs(args, image_size) if accelerator.is_main_process else None
    summary = {"retrieval_before": None, "retrieval_after": None}
    if held_out is not None and state["step"] == 0:
        summary["retrieval_before"] = evaluate_zero_shot(unwrapped, processor, held_out, args.eval_k)
        accelerator.print(f"Zero-shot retrieval before training  {_retrieval_line(summary['retrieval_before'])}")

    skipped = dict(state["skipped"])  # source → reason, for this run's bad records
    progress = _progress_bar(accelerator, total_steps, state["step"])
    last_losses, started, pairs_seen = {}, time.perf_counter(), 0
    model.train()
    while state["step"] < total_steps:
        if sampler is not None:
            sampler.set_epoch(state["epoch"])
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(state["epoch"])
        batches = (
            accelerator.skip_first_batches(loader, state["batches_in_epoch"]) if state["batches_in_epoch"] else loader
        )
        for batch in batches:
            skipped.update((record.source, record.reason) for record in batch.pop("skipped"))
            sample_keys = batch.pop("sample_keys")
            batch = {name: value.to(accelerator.device) for name, value in batch.items()}
            # Each pair's masks come from its own key (seed, epoch, index): the same whatever the batch, the number
            # of processes or the accumulation.
            image_mask, text_mask = unwrapped.sample_masks(
                batch["pixel_values"], batch["input_ids"], batch["attention_mask"], sample_keys
            )
            generator = step_generator(args.seed, state["micro_step"], accelerator.device)
            with accelerator.accumulate(model):
                outputs = model(**batch, image_mask=image_mask, text_mask=text_mask, generator=generator)
                accelerator.backward(outputs.loss)
                if accelerator.sync_gradients and args.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad()
            state["micro_step"] += 1
            state["batches_in_epoch"] += 1
            pairs_seen += batch["input_ids"].shape[0] * accelerator.num_processes
            if not accelerator.sync_gradients:
                continue
            scheduler.step()
            unwrapped.update_teacher()
            state["step"] += 1
            last_losses = _mean_losses(accelerator, outputs)
            progress.update(1)
            progress.set_postfix(
                loss=f"{last_losses['loss']:.3f}", pairs_per_s=f"{pairs_seen / (time.perf_counter() - started):.0f}"
            )
            if state["step"] % args.log_every == 0 or state["step"] == total_steps:
                accelerator.log(
                    {
                        **{f"train/{name}": value for name, value in last_losses.items()},
                        "train/learning_rate": scheduler.get_last_lr()[0],
                        "train/skipped_records": len(skipped),
                    },
                    step=state["step"],
                )
            if args.checkpoint_every and state["step"] % args.checkpoint_every == 0:
                state["skipped"] = skipped = _gather_skipped(skipped)
                save_checkpoint(accelerator, output_dir, state, args.save_total_limit)
            if state["step"] >= total_steps:
                break
        else:
            state["epoch"] += 1
            state["batches_in_epoch"] = 0
    progress.close()
    elapsed = time.perf_counter() - started

    skipped = _gather_skipped(skipped)
    summary.update(steps=state["step"], final_losses=last_losses, seconds=round(elapsed, 1), skipped_records=skipped)
    if accelerator.is_main_process:
        if held_out is not None:
            summary["retrieval_after"] = evaluate_zero_shot(unwrapped, processor, held_out, args.eval_k)
            accelerator.print(f"Zero-shot retrieval after training   {_retrieval_line(summary['retrieval_after'])}")
        unwrapped.save_pretrained(output_dir)
        processor.save_pretrained(output_dir)
        (output_dir / "pretraining_summary.json").write_text(json.dumps(summary, indent=2))
        accelerator.print(_skip_report(skipped))
        hub_model_id = (args.hub_model_id or output_dir.name) if args.push_to_hub else None
        finish_run(output_dir, hub_model_id, **_card_arguments(args, summary, output_dir))
    _end_training(accelerator)
    return PretrainingResult(model=unwrapped, processor=processor, summary=summary)


def _mean_losses(accelerator: Accelerator, outputs) -> dict[str, float]:
    """The step's losses (and MLM accuracy), averaged over ranks."""
    names = [
        name
        for name in ("loss", "loss_itc", "loss_itm", "loss_mlm", "loss_mim", "loss_mrm", "mlm_accuracy")
        if getattr(outputs, name, None) is not None
    ]
    values = torch.stack([getattr(outputs, name).detach().float() for name in names])
    values = accelerator.reduce(values, reduction="mean")
    return dict(zip(names, values.tolist()))


def _data_description(args: PretrainingArguments) -> tuple[str, list[str]]:
    """The training data in words, and the `datasets` entries of the model card."""
    if args.hf_dataset:
        return f"the `datasets` folder {Path(args.hf_dataset).name}", [Path(args.hf_dataset).name]
    if args.train_file:
        names = [Path(file).stem for file in args.train_file]
        return "the caption files " + ", ".join(names), names
    return "the built-in generated shape scenes of mamo_hf", ["mamo_hf demo scenes"]


def _card_arguments(args: PretrainingArguments, summary: dict, output_dir: Path) -> dict:
    """What the model card of a pre-training run says (see `mamo_hf.hub.create_model_card`)."""
    from .hub import retrieval_results

    data, datasets = _data_description(args)
    results = []
    if summary["retrieval_after"]:
        held_out = "held-out caption file" if args.eval_file else "held-out generated scenes"
        results = retrieval_results(summary["retrieval_after"], f"{held_out} (zero-shot)")
    training = {
        name: getattr(args, name)
        for name in (
            "model",
            "init",
            "image_size",
            "batch_size",
            "gradient_accumulation_steps",
            "learning_rate",
            "weight_decay",
            "warmup_steps",
            "mixed_precision",
            "seed",
        )
    }
    training.update(steps=summary["steps"], seconds=summary["seconds"], final_losses=summary["final_losses"])
    return {
        "model_name": output_dir.name,
        "datasets": datasets,
        "base_model": args.init,
        "results": results,
        "summary": f"A MAMO model pre-trained with `mamo-hf pretrain` on {data}.",
        "training": training,
    }


def _gather_skipped(skipped: dict[str, str]) -> dict[str, str]:
    """The bad records met by every rank (source → reason)."""
    from accelerate.utils import gather_object

    merged = {}
    for part in gather_object([skipped]):
        merged.update(part)
    return merged


def _skip_report(skipped: dict[str, str]) -> str:
    """One line per kind of bad record, with the files."""
    if not skipped:
        return "No record was skipped."
    kinds = Counter(reason.split(":")[0] for reason in skipped.values())
    lines = [f"Skipped {len(skipped)} bad record(s): " + ", ".join(f"{n} × {kind}" for kind, n in kinds.most_common())]
    lines += [f"  {source}: {reason}" for source, reason in sorted(skipped.items())]
    return "\n".join(lines)


def _progress_bar(accelerator: Accelerator, total: int, initial: int):
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        disable=not accelerator.is_local_main_process,
        desc="pre-training",
        unit="step",
        dynamic_ncols=True,
    )


__all__ = ["CSVTracker", "MamoTeacherUpdateCallback", "PretrainingArguments", "PretrainingResult", "pretrain"]
