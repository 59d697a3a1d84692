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

import contextlib
import csv
import dataclasses
import json
import math
import os
import re
import shutil
import socket
import statistics
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import torch
from accelerate import Accelerator
from accelerate.tracking import GeneralTracker
from accelerate.utils import (
    DistributedDataParallelKwargs,
    ProjectConfiguration,
    broadcast_object_list,
    gather_object,
    set_seed,
)
from huggingface_hub.errors import StrictDataclassError
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm
from transformers import AutoTokenizer, PretrainedConfig, TrainerCallback, get_cosine_with_min_lr_schedule_with_warmup
from transformers.integrations import is_tensorboard_available
from transformers.utils import logging

from mamo_hf_cli import first_line

from .configuration_mamo import MamoConfig, special_token_ids
from .data import (
    CaptionDataset,
    CaptionNegatives,
    CaptionOptions,
    DemoCaptionDataset,
    HFCaptionDataset,
    PretrainingCollator,
    StreamingCaptionDataset,
    TrainTransform,
    demo_tokenizer,
    expand_data_files,
    processor_for_config,
    shard_format,
    tiny_config_and_processor,
)
from .data.demo import TRAINING_TEMPLATES
from .data.negatives import FAMILIES as NEGATIVE_FAMILIES
from .data.records import BadRecordError, NoUsableRecordsError
from .evaluation.retrieval import evaluate_retrieval
from .hub import REPO_ID, finish_run, retrieval_results, upload_problem
from .losses_mamo import JointMasking
from .modeling_mamo import OBJECTIVES, MamoForPreTraining
from .plots import plot_curves, read_curves
from .processing_mamo import MamoProcessor

logger = logging.get_logger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"

TRAINING_STATE = "training_state.json"
SUMMARY_FILE = "pretraining_summary.json"

LOCK_FILE = ".mamo_run.lock"

CPUINFO = Path("/proc/cpuinfo")  # where `has_native_bf16` reads the CPU's flags (Linux)

# Files of `Accelerator.save_state` that a checkpoint must hold (model weights in safetensors, the optimizer state
# loaded with `weights_only=True`); the scheduler state, the data position and the counters are JSON.
CHECKPOINT_FILES = ("model.safetensors", "optimizer.bin", TRAINING_STATE)


class PretrainingError(Exception):
    """A pre-training run refused or stopped for a reason the message explains (`mamo-hf` prints it without a
    traceback)."""


class InvalidArgumentError(PretrainingError, ValueError):
    """A `PretrainingArguments` value that cannot work, found before any work."""


class OutputDirInUseError(PretrainingError, RuntimeError):
    """Another live run holds the output folder."""


class CheckpointError(PretrainingError, ValueError):
    """A checkpoint to resume from is incomplete or unreadable."""


class TrainingDivergedError(PretrainingError, RuntimeError):
    """Too many consecutive steps had a non-finite loss or gradient, or the weights became non-finite."""


class BadDataError(PretrainingError, ValueError):
    """The training data cannot be read: an annotation file or shard that is not what it should be, or (with
    `--strict`) a bad record."""


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
        default_factory=list,
        metadata={
            "help": "caption JSON/JSONL/CSV files, or WebDataset .tar / Parquet shards (streamed, need --max-steps); "
            "globs and brace ranges such as 'shards/{00000..00099}.tar' are expanded (empty: the built-in demo data)"
        },
    )
    image_root: str | None = field(default=None, metadata={"help": "folder that relative image paths start from"})
    hf_dataset: str | None = field(default=None, metadata={"help": "a local `datasets` folder (load_from_disk)"})
    image_column: str = field(
        default="image",
        metadata={
            "help": "image column of --hf-dataset or Parquet shards (Parquet without it: jpg, jpeg, png or webp)"
        },
    )
    text_column: str = field(
        default="caption",
        metadata={"help": "text column of --hf-dataset or Parquet shards (Parquet without it: text or txt)"},
    )
    shuffle_buffer: int = field(
        default=1000,
        metadata={
            "help": "WebDataset/Parquet shards: shuffle the shard order every epoch and pairs in a buffer of this "
            "many records (0: read in order)"
        },
    )
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
    demo_templates: list[str] = field(
        default_factory=lambda: ["list"],
        metadata={"help": "caption templates of the built-in demo data: list and/or relation (one drawn per pair)"},
    )
    augment: bool = field(default=True, metadata={"help": "random resized crop and left/right-aware flip"})
    caption_safe_crops: bool = field(
        default=True,
        metadata={
            "help": "captions that name places or sizes get mild crops (90-100%% of the image) that keep them true"
        },
    )
    caption_negatives: int = field(
        default=0,
        metadata={
            "help": "rule-based hard-negative captions per caption (attributes, objects or relations swapped, words "
            "shuffled), added to ITC's softmax and to ITM (0: off)"
        },
    )
    caption_negative_families: list[str] = field(
        default_factory=lambda: list(NEGATIVE_FAMILIES),
        metadata={"help": "rule families of --caption-negatives: " + ", ".join(NEGATIVE_FAMILIES)},
    )
    max_length: int = field(default=40, metadata={"help": "token limit of a caption"})
    max_words: int = field(default=30, metadata={"help": "word limit of a cleaned caption"})
    strict: bool = field(default=False, metadata={"help": "fail on the first bad record instead of skipping it"})
    max_image_pixels: int = field(
        default=25_000_000,
        metadata={"help": "larger images are decoded at reduced size (JPEG) or skipped and counted (0: no limit)"},
    )
    allow_absolute_image_paths: bool = field(
        default=False,
        metadata={"help": "accept image paths in annotation files that are absolute or lead out of --image-root"},
    )
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
    max_nonfinite_steps: int = field(
        default=5,
        metadata={
            "help": "a step with a non-finite loss or gradient is skipped (no update of the weights, optimizer, "
            "schedule, teacher or queue); after this many in a row the run stops with an error"
        },
    )
    loss_spike_factor: float = field(
        default=10.0, metadata={"help": "warn when the loss exceeds this multiple of its running median (0: off)"}
    )
    mixed_precision: str = field(default="no", metadata={"help": "no, bf16 or fp16"})
    allow_slow_bf16: bool = field(
        default=False,
        metadata={"help": "run bf16 even on a CPU without native bf16 (AVX512-BF16 or AMX), where it is ~25× slower"},
    )
    seed: int = field(default=42, metadata={"help": "seed of the initialisation, the data order and the masks"})
    cpu: bool = field(default=False, metadata={"help": "run on CPU even where a GPU exists"})
    # Output
    output_dir: str = field(default="mamo-pretrain", metadata={"help": "checkpoints, logs and the final model"})
    checkpoint_every: int = field(default=1000, metadata={"help": "steps between checkpoints (0: none)"})
    save_total_limit: int = field(default=2, metadata={"help": "checkpoints kept (older ones are deleted)"})
    resume: str | None = field(default=None, metadata={"help": "'latest' or a checkpoint folder to continue from"})
    allow_changed_arguments: bool = field(
        default=False,
        metadata={
            "help": "with --resume: continue although arguments that define the run (batch size, seed, data, model "
            "config, schedule, ...) differ from the checkpoint's; the new values are used"
        },
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "start a fresh run in a folder that holds another run's checkpoints, logs or model"},
    )
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
        self.path = Path(logging_dir) / run_name / "metrics.csv"  # created with the first write (after the lock)

    @property
    def tracker(self):
        return self.path

    def store_init_configuration(self, values: dict):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        (self.path.parent / "config.json").write_text(json.dumps(values, indent=2, default=str))

    def discard_after(self, step: int) -> None:
        """Remove the rows logged after `step` (rewritten atomically)."""
        if not self.path.exists():
            return
        with self.path.open(newline="") as handle:
            rows = list(csv.reader(handle))
        kept = [rows[0], *(row for row in rows[1:] if row[0] in ("", "None") or int(row[0]) <= step)]
        staging = self.path.with_suffix(".csv.tmp")
        with staging.open("w", newline="") as handle:
            csv.writer(handle).writerows(kept)
        os.replace(staging, self.path)

    def log(self, values: dict, step: int | None = None, **kwargs):
        is_new = not self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", newline="") as handle:
            writer = csv.writer(handle)
            if is_new:
                writer.writerow(["step", "name", "value"])
            writer.writerows([step, name, value] for name, value in values.items())


def _init_trackers(accelerator: Accelerator, args: PretrainingArguments, resumed_step: int | None) -> None:
    """Start the trackers; after a resume, drop what the interrupted run logged past the checkpoint (the steps
    are logged again), so that no step appears twice."""
    init_kwargs = {}
    if resumed_step is not None:
        init_kwargs["tensorboard"] = {"purge_step": resumed_step + 1}
    accelerator.init_trackers(
        "mamo", config={k: str(v) for k, v in dataclasses.asdict(args).items()}, init_kwargs=init_kwargs
    )
    if resumed_step is not None and accelerator.is_main_process:
        for tracker in accelerator.trackers:
            if isinstance(tracker, CSVTracker):
                tracker.discard_after(resumed_step)


def _trackers(report_to: list[str], output_dir: str) -> list:
    trackers = []
    for name in report_to:
        if name == "csv":
            trackers.append(CSVTracker("mamo", Path(output_dir) / "logs"))
        elif name == "tensorboard":
            if is_tensorboard_available():
                trackers.append("tensorboard")
            else:
                logger.warning("TensorBoard is not installed: metrics go to the CSV log only.")
        else:
            raise ValueError(f"Unknown tracker {name!r} in `report_to`: use tensorboard and/or csv.")
    return trackers


# ----------------------------------------------------------------------------------------------------------------
# Arguments and the output folder
# ----------------------------------------------------------------------------------------------------------------


MAX_DEMO_PAIRS = 10_000_000
PRESET_PATCH_SIZE = 16  # the patch size of the tiny and base presets
# The largest training resolution accepted: 4096 px is already 65,536 patches of 16 px per image (mamo-base trains at
# 256 px); beyond it a run only fills the memory (100,000 px took 22 GB before being killed).
MAX_IMAGE_SIZE = 4096
_INTEGER_MINIMUMS = {
    "batch_size": 1,
    "gradient_accumulation_steps": 1,
    "epochs": 1,
    "log_every": 1,
    "max_nonfinite_steps": 1,
    "eval_k": 1,
    "demo_pairs": 1,
    "max_length": 3,  # [CLS], one word piece, [SEP]
    "warmup_steps": 0,
    "checkpoint_every": 0,
    "save_total_limit": 0,
    "num_workers": 0,
    "eval_pairs": 0,
    "max_image_pixels": 0,
    "shuffle_buffer": 0,
    "caption_negatives": 0,
}


def validate_arguments(args: PretrainingArguments) -> None:
    """Check every argument that can be checked before any work; raise `InvalidArgumentError` naming the first
    bad one (the flag's name, as `mamo-hf pretrain` spells it)."""

    def require(condition: bool, name: str, message: str) -> None:
        if not condition:
            raise InvalidArgumentError(f"--{name.replace('_', '-')} {message}")

    for name, minimum in _INTEGER_MINIMUMS.items():
        value = getattr(args, name)
        require(isinstance(value, int) and value >= minimum, name, f"must be an integer >= {minimum}, got {value!r}.")
    require(
        args.max_steps is None or (isinstance(args.max_steps, int) and args.max_steps >= 1),
        "max_steps",
        f"must be an integer >= 1, got {args.max_steps!r}.",
    )
    for name in ("learning_rate", "min_learning_rate", "weight_decay", "max_grad_norm", "loss_spike_factor"):
        value, strict = getattr(args, name), name == "learning_rate"
        ok = isinstance(value, (int, float)) and math.isfinite(value) and (value > 0 if strict else value >= 0)
        require(ok, name, f"must be a finite number {'> 0' if strict else '>= 0'}, got {value!r}.")
    require(
        args.min_learning_rate <= args.learning_rate,
        "min_learning_rate",
        f"({args.min_learning_rate}) must not exceed --learning-rate ({args.learning_rate}).",
    )
    require(
        args.mixed_precision in ("no", "bf16", "fp16"),
        "mixed_precision",
        f"must be no, bf16 or fp16, got {args.mixed_precision!r}.",
    )
    require(
        args.init is not None or args.model in ("tiny", "base"),
        "model",
        f"must be tiny or base (or give --init), got {args.model!r}.",
    )
    require(
        0 <= args.demo_minimal_pairs <= 1,
        "demo_minimal_pairs",
        f"is a fraction in [0, 1], got {args.demo_minimal_pairs}.",
    )
    require(1 <= args.demo_max_objects <= 3, "demo_max_objects", f"must be 1, 2 or 3, got {args.demo_max_objects}.")
    unknown_templates = sorted(set(args.demo_templates) - set(TRAINING_TEMPLATES))
    require(
        args.demo_templates and not unknown_templates,
        "demo_templates",
        f"must be some of {', '.join(TRAINING_TEMPLATES)}, got {args.demo_templates}.",
    )
    unknown_families = sorted(set(args.caption_negative_families) - set(NEGATIVE_FAMILIES))
    require(
        args.caption_negative_families and not unknown_families,
        "caption_negative_families",
        f"must be some of {', '.join(NEGATIVE_FAMILIES)}, got {args.caption_negative_families}.",
    )
    require(
        args.model == "tiny" or args.tokenizer or args.init,
        "model",
        "base needs --tokenizer (e.g. bert-base-uncased), or start from --init (see `mamo-hf init-base`).",
    )
    unknown = sorted(set(args.model_config) - set(MamoConfig().to_dict()))
    require(not unknown, "model_config", f"has unknown MamoConfig field(s) {unknown}.")
    weights = [args.model_config.get(f"{name}_weight", 1.0) for name in ("itc", "itm", "mlm", "mim", "mrm")]
    require(
        any(isinstance(weight, (int, float)) and weight > 0 for weight in weights),
        "model_config",
        "turns every objective off (all five *_weight are 0): keep at least one.",
    )
    require(str(args.output_dir).strip() != "", "output_dir", "is empty: name the folder to write.")
    seed_ok = isinstance(args.seed, int) and 0 <= args.seed < 2**32
    require(seed_ok, "seed", f"must be in [0, 2**32), got {args.seed!r}.")
    require(
        args.demo_pairs <= MAX_DEMO_PAIRS, "demo_pairs", f"must be at most {MAX_DEMO_PAIRS:,}, got {args.demo_pairs}."
    )
    words_ok = isinstance(args.max_words, int) and args.max_words >= 1
    require(words_ok, "max_words", f"must be an integer >= 1, got {args.max_words!r}.")
    require(
        args.image_size is None or (isinstance(args.image_size, int) and 16 <= args.image_size <= MAX_IMAGE_SIZE),
        "image_size",
        f"must be an integer from 16 to {MAX_IMAGE_SIZE} (a multiple of the patch size), got {args.image_size!r}.",
    )
    require(
        args.init is not None or args.image_size is None or args.image_size % PRESET_PATCH_SIZE == 0,
        "image_size",
        f"{args.image_size} must be a multiple of the patch size {PRESET_PATCH_SIZE}.",
    )
    unknown_trackers = sorted(set(args.report_to) - {"tensorboard", "csv"})
    require(not unknown_trackers, "report_to", f"knows tensorboard and csv, got {unknown_trackers}.")
    require(
        not (args.hf_dataset and args.train_file),
        "hf_dataset",
        "and --train-file name two training sets: give one of them.",
    )
    repository = args.hub_model_id or Path(args.output_dir).resolve().name
    require(
        not args.push_to_hub or bool(REPO_ID.match(repository)),
        "hub_model_id",
        f"{repository!r} is not a Hub repository name (user/name): --push-to-hub would fail after training.",
    )
    problem = upload_problem() if args.push_to_hub else None
    require(problem is None, "push_to_hub", f"would fail after training: {problem}.")
    require(
        args.push_to_hub or args.hub_model_id is None,
        "hub_model_id",
        "is only used with --push-to-hub: add --push-to-hub, or leave --hub-model-id out.",
    )
    for name in ("init", "tokenizer"):
        check_model_location(getattr(args, name), name)
    for name in ("eval_file", "hf_dataset", "image_root"):
        path = getattr(args, name)
        require(not path or Path(path).exists(), name, f"{path}: no such file or folder.")
    require(not args.image_root or Path(args.image_root).is_dir(), "image_root", f"{args.image_root}: not a folder.")
    _validate_train_files(args)
    output_dir = Path(args.output_dir)
    require(not output_dir.exists() or output_dir.is_dir(), "output_dir", f"{output_dir} is a file, not a folder.")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InvalidArgumentError(f"--output-dir {output_dir}: cannot create it ({error.strerror}).") from None
    require(os.access(output_dir, os.W_OK | os.X_OK), "output_dir", f"{output_dir} is not writable.")


_SHARD_NAMES = {"webdataset": "WebDataset", "parquet": "Parquet"}


def check_model_location(location: str | None, name: str) -> None:
    """`--init`/`--tokenizer`: an existing local folder, or a name that can be a Hub repository (`user/name`)."""
    if location is None:
        return
    path = Path(location)
    if path.exists():
        if not path.is_dir():
            raise InvalidArgumentError(f"--{name} {location}: a file; give the folder written by save_pretrained.")
        return
    if not REPO_ID.match(location) or location.startswith(".") or "//" in location:
        raise InvalidArgumentError(f"--{name} {location}: no such folder (and not a Hub repository name).")


def check_output_dir_is_free(args: PretrainingArguments) -> None:
    """A run folder belongs to one run: a fresh run (no `--resume`) refuses a folder that holds another run's
    checkpoints, logs or final model, unless `--overwrite-output-dir` (which removes them, `clear_previous_run`)."""
    if args.resume or args.overwrite_output_dir:
        return
    found = previous_run_files(Path(args.output_dir))
    if found:
        raise OutputDirInUseError(
            f"--output-dir {args.output_dir} holds another run's results ({', '.join(found[:3])}): continue it with "
            "--resume latest, replace it with --overwrite-output-dir, or choose another folder."
        )


def _claim_output_dir(accelerator: Accelerator, args: PretrainingArguments) -> None:
    """With the folder locked, the main process checks that it holds no other run's results (or, with
    `--overwrite-output-dir`, removes them); every rank raises the same error if it does."""
    message = [None]
    if accelerator.is_main_process:
        try:
            check_output_dir_is_free(args)
        except OutputDirInUseError as error:
            message = [str(error)]
        else:
            if args.overwrite_output_dir and not args.resume:
                clear_previous_run(Path(args.output_dir))
    if accelerator.num_processes > 1:
        broadcast_object_list(message)
    if message[0] is not None:
        raise OutputDirInUseError(message[0])


def previous_run_files(output_dir: Path) -> list[str]:
    """What an earlier run left in `output_dir`: checkpoints, the final model and summary, logs."""
    names = [path.name for path in sorted(output_dir.glob(f"{CHECKPOINT_PREFIX}*"))]
    names += [name for name in (SUMMARY_FILE, "model.safetensors", "logs", "runs") if (output_dir / name).exists()]
    return names


def clear_previous_run(output_dir: Path) -> None:
    """Remove what a previous run wrote (checkpoints, staging folders, logs, summary); the model files are
    overwritten by the new run's save."""
    for path in [*output_dir.glob(f"{CHECKPOINT_PREFIX}*"), *output_dir.glob(f".{CHECKPOINT_PREFIX}*.tmp")]:
        shutil.rmtree(path, ignore_errors=True)
    for name in ("logs", "runs"):
        shutil.rmtree(output_dir / name, ignore_errors=True)
    (output_dir / SUMMARY_FILE).unlink(missing_ok=True)


def _validate_train_files(args: PretrainingArguments) -> None:
    """Every `--train-file` path or pattern must match a file, and the files must be one kind of data: caption
    files, or WebDataset/Parquet shards (streamed, so the run needs `--max-steps`)."""
    if not args.train_file:
        return
    try:
        shards = shard_format(expand_data_files(args.train_file))
    except (FileNotFoundError, ValueError) as error:
        raise InvalidArgumentError(f"--train-file {error}") from None
    if shards and args.max_steps is None:
        raise InvalidArgumentError(
            f"--max-steps is needed: --train-file names {_SHARD_NAMES[shards]} shards, which are streamed, and a "
            "streamed run counts steps, not epochs."
        )
    renamed = [
        flag
        for flag, name in (("--image-column", "image_column"), ("--text-column", "text_column"))
        if getattr(args, name) != PretrainingArguments.__dataclass_fields__[name].default
    ]
    if renamed and shards != "parquet":
        data = (
            "WebDataset shards name images and captions by their file suffixes"
            if shards
            else ("caption files name them with the fields 'image' and 'caption'")
        )
        raise InvalidArgumentError(
            f"{renamed[0]} applies to --hf-dataset and Parquet shards only; {data}, so it would be ignored."
        )


def has_native_bf16(device: torch.device) -> bool | None:
    """Whether bf16 matmuls run at hardware speed on `device`: a CUDA GPU with bf16 support, or a CPU with
    AVX512-BF16 or AMX (read from /proc/cpuinfo; `None` where that cannot be known). Elsewhere torch computes the
    backward's bf16 matmuls with a reference kernel."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return None
    try:
        cpuinfo = CPUINFO.read_text()
    except OSError:
        return None
    flags = {flag for line in cpuinfo.splitlines() if line.startswith("flags") for flag in line.split()}
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def check_bf16_speed(args: PretrainingArguments, device: torch.device) -> None:
    """Refuse `--mixed-precision bf16` where the hardware has no native bf16 (measured ~25× slower than fp32 on such a
    CPU, see BENCHMARKS.md), unless `--allow-slow-bf16`, which turns the refusal into a warning."""
    if args.mixed_precision != "bf16" or has_native_bf16(device) is not False:
        return
    message = (
        f"--mixed-precision bf16: this {device.type.upper()} has no native bf16 (no AVX512-BF16 or AMX), so torch "
        "computes bf16 matmuls with a reference kernel, ~25× slower than fp32 (measured, BENCHMARKS.md)"
    )
    if not args.allow_slow_bf16:
        raise InvalidArgumentError(f"{message}. Use --mixed-precision no, or --allow-slow-bf16 to run it anyway.")
    logger.warning(f"{message}; running anyway (--allow-slow-bf16).")


def check_precision_and_device(args: PretrainingArguments, accelerator: Accelerator) -> None:
    """fp16 is a GPU precision: on a CPU Accelerate would run fp32 while the card said fp16, so it is refused. Then
    the run says which device, processes and precision it really uses."""
    if args.mixed_precision == "fp16" and accelerator.device.type == "cpu":
        raise InvalidArgumentError(
            "--mixed-precision fp16 needs a GPU; this run is on the CPU, where it would silently run in fp32: use "
            "--mixed-precision no (or bf16 on a CPU with native bf16)."
        )
    accelerator.print(
        f"Training on {accelerator.device} × {accelerator.num_processes} process(es), precision "
        f"{accelerator.mixed_precision if accelerator.mixed_precision != 'no' else 'fp32'}."
    )
    if args.model == "base" and not args.init and accelerator.device.type == "cpu":
        logger.warning("--model base on a CPU: expect about a minute per step; a GPU is the place for mamo-base.")


class OutputDirLock:
    """One run per output folder: `<output_dir>/.mamo_run.lock`, created atomically, holds the owner's pid, host and
    start time. A lock whose owner is gone (same host, no such process) is stale and taken over with a warning; a
    live owner, or one on another host, makes the second run refuse."""

    def __init__(self, output_dir: str | os.PathLike):
        self.path = Path(output_dir) / LOCK_FILE
        self.owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}

    def acquire(self) -> None:
        """Take the lock, or raise `OutputDirInUseError`."""
        for _ in range(2):
            try:
                descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                holder = self._holder()
                if not self._is_stale(holder):
                    raise OutputDirInUseError(
                        f"--output-dir {self.path.parent} is in use by another run (pid {holder.get('pid')} on "
                        f"{holder.get('host')}, started {holder.get('started')}). Use another folder, or delete "
                        f"{self.path} if that run is gone."
                    ) from None
                logger.warning(f"Taking over the stale lock of a run that is gone: {holder}.")
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(descriptor, "w") as handle:
                json.dump(self.owner, handle)
            return
        raise OutputDirInUseError(f"--output-dir {self.path.parent}: another run took the lock at the same time.")

    def release(self) -> None:
        """Remove the lock if this process holds it."""
        if self._holder() == self.owner:
            self.path.unlink(missing_ok=True)

    def _holder(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def _is_stale(self, holder: dict) -> bool:
        if not holder:  # unreadable: stale unless it may be a lock being written this very moment
            return self.path.exists() and time.time() - self.path.stat().st_mtime > 10
        if holder.get("host") != socket.gethostname():
            return False
        try:
            os.kill(int(holder["pid"]), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, KeyError, ValueError, TypeError):
            return False
        return False


def check_process_count(accelerator: Accelerator) -> None:
    """A launcher that started several processes must get a process group: without `--cpu` on a machine without
    GPUs, Accelerate would give each process a run of its own, all racing for one output folder."""
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and accelerator.num_processes != launched:
        raise InvalidArgumentError(
            f"--cpu is needed: the launcher started {launched} processes but Accelerate sees "
            f"{accelerator.num_processes} (no GPU here); add --cpu to run them as one CPU run."
        )


def _lock_output_dir(accelerator: Accelerator, output_dir: Path) -> OutputDirLock | None:
    """The main process takes the lock; every rank raises the same error if it could not."""
    lock, message = None, [None]
    if accelerator.is_main_process:
        lock = OutputDirLock(output_dir)
        try:
            lock.acquire()
        except OutputDirInUseError as error:
            message = [str(error)]
    if accelerator.num_processes > 1:
        broadcast_object_list(message)
    if message[0] is not None:
        raise OutputDirInUseError(message[0])
    return lock


# ----------------------------------------------------------------------------------------------------------------
# Model, data, optimiser
# ----------------------------------------------------------------------------------------------------------------


def build_model_and_processor(args: PretrainingArguments):
    """`MamoForPreTraining` and `MamoProcessor` from `--init`, or a freshly initialised preset; an invalid
    configuration (from `--model-config`, the tokenizer or the `--init` folder) raises `InvalidArgumentError`."""
    try:
        return _build_model_and_processor(args)
    except InvalidArgumentError:
        raise
    except (ValueError, StrictDataclassError) as error:  # the latter: a value of the wrong type for a field
        source = f"--init {args.init}" if args.init else "--model-config"
        cause = error.__cause__ if isinstance(error, StrictDataclassError) and error.__cause__ else error
        raise InvalidArgumentError(f"{source}: {first_line(cause).split(' Errors:')[0]}") from None


# The files a saved tokenizer has one of (fast tokenizers, WordPiece, BPE, SentencePiece).
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model")


def load_tokenizer(location: str, flag: str):
    """The tokenizer saved at `location` (a folder or a Hub name) given with `--<flag>`; `InvalidArgumentError`
    naming the flag when there is none, or when it has no vocabulary beyond its special tokens (transformers builds
    such an empty tokenizer from a folder holding only a BERT config)."""
    folder = Path(location)
    if folder.is_dir() and not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise InvalidArgumentError(
            f"--{flag} {location}: no tokenizer in this folder (none of {', '.join(TOKENIZER_FILES)})."
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(location)
    except (OSError, ValueError) as error:
        where = "" if folder.exists() else "no such folder, and as a Hub name: "
        raise InvalidArgumentError(f"--{flag} {location}: {where}no usable tokenizer ({first_line(error)})") from None
    if len(tokenizer) <= len(set(tokenizer.all_special_ids)):
        raise InvalidArgumentError(
            f"--{flag} {location}: a tokenizer without a vocabulary (only its {len(tokenizer)} special tokens); give "
            "a folder with a BERT tokenizer's vocab.txt or tokenizer.json."
        )
    return tokenizer


def check_saved_mamo(location: str, flag: str) -> None:
    """`--<flag>` (a folder or a Hub name) must hold a saved MAMO: `InvalidArgumentError` naming the flag when it
    has no config.json with a model_type, or that of another model."""
    try:
        model_type = PretrainedConfig.get_config_dict(location)[0].get("model_type")
    except (OSError, ValueError) as error:
        raise InvalidArgumentError(f"--{flag} {location}: not a saved model ({first_line(error)})") from None
    if model_type is None:
        raise InvalidArgumentError(f"--{flag} {location}: not a saved model (no config.json with a model_type).")
    if model_type != MamoConfig.model_type:
        raise InvalidArgumentError(
            f"--{flag} {location}: a {model_type} checkpoint, not MAMO; make a MAMO from a ViT and a BERT with "
            "`mamo-hf init-base`."
        )


def _load_init(location: str, model_config: dict):
    """The model and processor of an `--init` folder or Hub name, which must be a saved MAMO with its processor."""
    check_saved_mamo(location, "init")
    try:
        model = MamoForPreTraining.from_pretrained(location, dtype=torch.float32, **model_config)
        return model, MamoProcessor.from_pretrained(location)
    except OSError as error:  # no weights, or no processor beside them
        raise InvalidArgumentError(f"--init {location}: {first_line(error)}") from None


def _build_model_and_processor(args: PretrainingArguments):
    if args.init is not None:
        model, processor = _load_init(args.init, args.model_config)
    else:
        tokenizer = load_tokenizer(args.tokenizer, "tokenizer") if args.tokenizer else demo_tokenizer()
        if args.model == "tiny":
            size = args.image_size or 64
            config, processor = tiny_config_and_processor(size, PRESET_PATCH_SIZE, tokenizer, **args.model_config)
        else:  # "base" (`validate_arguments` allows no other preset)
            config = MamoConfig.mamo_base(**args.model_config)
            config.text_config.update({"vocab_size": len(tokenizer), **special_token_ids(tokenizer)})
            processor = processor_for_config(config, tokenizer)
        set_seed(args.seed)
        model = MamoForPreTraining(config)
    if args.image_size is not None:
        processor.image_processor.size = {"height": args.image_size, "width": args.image_size}
    return model, processor


def build_train_dataset(args: PretrainingArguments, image_size: int):
    """The training pairs: caption files, WebDataset/Parquet shards, a local `datasets` folder, a stream, or the
    built-in demo data."""
    if args.demo_minimal_pairs and (args.train_file or args.hf_dataset or args.batch_size % 2):
        raise ValueError(
            "`--demo-minimal-pairs` applies to the built-in demo data only and needs an even `--batch-size` (each "
            f"batch holds whole pairs); got batch size {args.batch_size}"
            + (" and a --train-file/--hf-dataset." if args.train_file or args.hf_dataset else ".")
        )
    transform = TrainTransform(image_size, caption_safe=args.caption_safe_crops) if args.augment else None
    options = CaptionOptions(
        transform=transform,
        max_words=args.max_words,
        strict=args.strict,
        seed=args.seed,
        max_image_pixels=args.max_image_pixels or None,
        allow_absolute_paths=args.allow_absolute_image_paths,
    )
    if args.hf_dataset:
        return HFCaptionDataset(_train_split(args.hf_dataset), args.image_column, args.text_column, options)
    train_files = expand_data_files(args.train_file) if args.train_file else []
    if shard_format(train_files):
        return StreamingCaptionDataset.from_shards(
            train_files, args.image_column, args.text_column, options, shuffle_buffer=args.shuffle_buffer
        )
    if train_files and args.streaming:
        if args.max_steps is None:
            raise InvalidArgumentError("--streaming: a streaming run is step-based, give --max-steps.")
        return StreamingCaptionDataset(train_files, args.image_root, options)
    if train_files:
        return CaptionDataset(train_files, args.image_root, options)
    return DemoCaptionDataset(
        args.demo_pairs,
        seed=args.seed,
        image_size=image_size,
        max_objects=args.demo_max_objects,
        transform=transform,
        max_words=args.max_words,
        minimal_pairs=args.demo_minimal_pairs,
        templates=tuple(args.demo_templates),
    )


def _train_split(folder: str) -> datasets.Dataset:
    """The dataset `save_to_disk` wrote to `folder`; of a `DatasetDict`, its "train" split."""
    try:
        loaded = datasets.load_from_disk(folder)
    except Exception as error:  # datasets' own errors for a damaged folder: IndexError, KeyError, ArrowInvalid...
        raise BadDataError(
            f"--hf-dataset {folder}: not a dataset that datasets.load_from_disk can read ({type(error).__name__}: "
            f"{first_line(error)}); write it with Dataset.save_to_disk."
        ) from None
    if not isinstance(loaded, datasets.DatasetDict):
        return loaded
    if "train" not in loaded:
        raise InvalidArgumentError(
            f"--hf-dataset {folder}: a DatasetDict without a 'train' split (its splits: {', '.join(loaded)}); save "
            "the split to train on with save_to_disk."
        )
    print(f"--hf-dataset {folder}: a DatasetDict; training on its 'train' split ({len(loaded['train'])} rows).")
    return loaded["train"]


# Above this share of words read as [UNK], the tokenizer cannot read the training captions: the run is refused.
MAX_UNKNOWN_WORD_SHARE = 0.2


def check_vocabulary(args: PretrainingArguments, dataset, tokenizer) -> None:
    """Own captions read with the built-in demo tokenizer (no `--tokenizer`, no `--init`): refuse when more than
    `MAX_UNKNOWN_WORD_SHARE` of their words become [UNK] (warn above 1 %), naming the flag that fixes it."""
    if args.init or args.tokenizer or not (args.train_file or args.hf_dataset):
        return
    if not hasattr(dataset, "sample_captions"):  # a stream: not read ahead
        return
    words = [word for caption in dataset.sample_captions() for word in caption.split()]
    if not words:
        return
    pieces = tokenizer(words, add_special_tokens=False)["input_ids"]
    share = sum(tokenizer.unk_token_id in word_pieces for word_pieces in pieces) / len(words)
    source = "--train-file" if args.train_file else "--hf-dataset"
    message = (
        f"{source}: {share:.0%} of the words of its captions are unknown to the built-in demo tokenizer "
        f"({len(tokenizer)} tokens), which reads them as [UNK]; pass --tokenizer (a BERT tokenizer folder or Hub "
        "name, e.g. bert-base-uncased) or --init a model saved with its tokenizer."
    )
    if share > MAX_UNKNOWN_WORD_SHARE:
        raise InvalidArgumentError(message)
    if share > 0.01:
        logger.warning(message)


def caption_negatives(args: PretrainingArguments) -> CaptionNegatives | None:
    """The rule-based caption negatives of `--caption-negatives` (None when 0), seeded by `--seed`."""
    if args.caption_negatives == 0:
        return None
    return CaptionNegatives(args.caption_negatives, tuple(args.caption_negative_families), seed=args.seed)


def held_out_pairs(args: PretrainingArguments, image_size: int):
    """Held-out `(images, captions, image_to_texts, text_to_image)` for zero-shot retrieval, or `None`."""
    if args.eval_file:
        options = CaptionOptions(
            max_words=args.max_words,
            max_image_pixels=args.max_image_pixels or None,
            allow_absolute_paths=args.allow_absolute_image_paths,
        )
        dataset = CaptionDataset([args.eval_file], args.image_root, options)
    elif args.eval_pairs > 0 and not (args.train_file or args.hf_dataset):
        dataset = DemoCaptionDataset(
            args.eval_pairs,
            seed=args.seed + 1_000_003,
            image_size=image_size,
            max_objects=args.demo_max_objects,
            max_words=args.max_words,
            templates=tuple(args.demo_templates),
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
    """This rank's share of one epoch's permutation, in global batches; the order is a function of (seed, epoch).

    Each epoch draws a permutation from `seed + epoch`; with `block_size = k`, blocks of k consecutive indices are
    shuffled and kept together (minimal pairs stay in one batch when the batch size is a multiple of k). Global
    micro-batch g is `permutation[g·B·W : (g+1)·B·W]` for batch size B and W ranks, and rank r takes its r-th slice
    of B (so two ranks of B see what one process of 2B sees). An epoch holds whole optimizer steps: its number of
    global micro-batches is rounded down to a multiple of `batches_per_step`; the indices left over are not used in
    that epoch. `set_epoch(epoch, start_batch)` resumes in the middle of an epoch, so a resumed run sees exactly the
    batches the uninterrupted run would have seen.
    """

    def __init__(
        self,
        size: int,
        seed: int,
        batch_size: int = 1,
        block_size: int = 1,
        num_replicas: int = 1,
        rank: int = 0,
        batches_per_step: int = 1,
    ):
        self.size, self.seed, self.batch_size, self.block_size = (size, seed, batch_size, block_size)
        self.num_replicas, self.rank, self.batches_per_step = (num_replicas, rank, batches_per_step)
        self.epoch, self.start_batch = 0, 0

    @property
    def batches_per_epoch(self) -> int:
        """Global micro-batches in one epoch (a multiple of `batches_per_step`)."""
        usable = self.size // self.block_size * self.block_size
        batches = usable // (self.batch_size * self.num_replicas)
        return batches // self.batches_per_step * self.batches_per_step

    def set_epoch(self, epoch: int, start_batch: int = 0):
        """Serve the permutation of `epoch` from global micro-batch `start_batch` on."""
        self.epoch, self.start_batch = epoch, start_batch

    def __len__(self):
        return max(0, self.batches_per_epoch - self.start_batch) * self.batch_size

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        blocks = torch.randperm(self.size // self.block_size, generator=generator)
        order = (blocks[:, None] * self.block_size + torch.arange(self.block_size)).flatten()
        for batch in range(self.start_batch, self.batches_per_epoch):
            first = (batch * self.num_replicas + self.rank) * self.batch_size
            yield from order[first : first + self.batch_size].tolist()


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


def save_checkpoint(
    accelerator: Accelerator, output_dir: Path, state: dict, save_total_limit: int, model, scheduler
) -> Path:
    """Write `checkpoint-<step>` atomically: everything goes to a temporary folder, renamed once complete, so an
    interrupted save never replaces (or looks like) the last good checkpoint.

    The folder holds the model (safetensors) and optimizer state of `Accelerator.save_state` and, as JSON, the data
    position, the counters and the scheduler state. Nothing in it is a pickle that loading would execute: the
    random streams are functions of the step (`step_generator`, `seed_micro_step`), so Accelerate's pickled RNG
    states are not kept. Refuses (`TrainingDivergedError`) to write non-finite weights.
    """
    assert_finite_weights(model, f"checkpoint of step {state['step']}")
    final = output_dir / f"{CHECKPOINT_PREFIX}{state['step']}"
    staging = output_dir / f".{final.name}.tmp"
    if accelerator.is_main_process and staging.exists():
        shutil.rmtree(staging)
    accelerator.wait_for_everyone()
    with written_or_cleared(staging, f"checkpoint-{state['step']}"):
        accelerator.save_state(str(staging))
        accelerator.wait_for_everyone()  # every rank has written its files (save_state itself ends with no barrier)
        if accelerator.is_main_process:
            for pickled in staging.glob("random_states_*.pkl"):
                pickled.unlink()
            saved = {**state, "scheduler": scheduler.state_dict()}
            (staging / TRAINING_STATE).write_text(json.dumps(saved, indent=2))
    if accelerator.is_main_process:
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
        for old in list_checkpoints(output_dir)[:-save_total_limit] if save_total_limit > 0 else []:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


@contextlib.contextmanager
def written_or_cleared(staging: Path, what: str):
    """Write into `staging`; when writing fails (a full disk: an `OSError`, or torch's "enforce fail at
    inline_container.cc"), remove the partial folder and raise a `CheckpointError` saying what is kept."""
    try:
        yield
    except (OSError, RuntimeError) as error:
        if isinstance(error, RuntimeError) and "inline_container" not in str(error) and "write" not in str(error):
            raise
        shutil.rmtree(staging, ignore_errors=True)
        reason = getattr(error, "strerror", None) or str(error).strip().splitlines()[0]
        raise CheckpointError(
            f"--output-dir {staging.parent}: could not write the {what} ({reason}); nothing partial was left, the "
            "last complete checkpoint is kept: free space, then run again with --resume latest."
        ) from None


def save_final_model(output_dir: Path, model, processor) -> None:
    """`save_pretrained` of the model and the processor into a staging folder, then moved into `output_dir` file by
    file: a failed save (a full disk) leaves no `config.json` without its weights."""
    staging = output_dir / ".final-model.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    with written_or_cleared(staging, "final model"):
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
    for path in staging.iterdir():
        os.replace(path, output_dir / path.name)
    staging.rmdir()


def load_checkpoint(accelerator: Accelerator, checkpoint: Path, scheduler) -> dict:
    """Restore a `save_checkpoint` folder into the prepared model and optimizer and `scheduler`; return the
    training state. Missing or unreadable files raise `CheckpointError` naming them."""
    for name in CHECKPOINT_FILES:
        if not (checkpoint / name).is_file():
            raise CheckpointError(f"Cannot resume from {checkpoint}: {name} is missing.")
    try:
        state = json.loads((checkpoint / TRAINING_STATE).read_text())
        if not isinstance(state, dict) or not isinstance(state.get("step"), int):
            raise ValueError("not an object with an integer 'step'")
        scheduler_state = state.pop("scheduler")
    except (ValueError, KeyError) as error:
        raise CheckpointError(f"Cannot resume from {checkpoint}: {TRAINING_STATE} is unreadable ({error}).") from None
    if scheduler_state is None:
        raise CheckpointError(f"Cannot resume from {checkpoint}: {TRAINING_STATE} holds no scheduler state.")
    try:
        accelerator.load_state(str(checkpoint))
    except Exception as error:  # safetensors, torch.load and load_state_dict each raise their own kind
        earlier = sorted(Path(checkpoint).parent.glob("checkpoint-*"), key=lambda path: path.stat().st_mtime)
        earlier = [path for path in earlier if path != Path(checkpoint)]
        advice = f"; resume from an earlier one with --resume {earlier[-1]}" if earlier else ""
        # torch.load's refusal of a damaged pickle starts with advice to load it unsafely: not what to tell a user.
        reason = "a damaged file" if "Weights only load failed" in str(error) else first_line(error).rstrip(".")
        raise CheckpointError(
            f"Cannot resume from {checkpoint}: the model or optimizer state is unreadable ({reason}){advice}."
        ) from error
    scheduler.load_state_dict(scheduler_state)
    return state


def assert_finite_weights(model: torch.nn.Module, what: str) -> None:
    """Raise `TrainingDivergedError` if a parameter or buffer of `model` holds a NaN or an infinity."""
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise TrainingDivergedError(f"Refusing to write the {what}: {name} holds non-finite values.")


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


# The arguments that define what a run computes: a resumed run must have the same (or say it changes them).
# `--max-steps` and `--epochs` may change: a resumed run can be extended (the schedule follows the new length).
RUN_DEFINING_ARGUMENTS = (
    "model",
    "init",
    "tokenizer",
    "model_config",
    "image_size",
    "train_file",
    "hf_dataset",
    "image_column",
    "text_column",
    "demo_pairs",
    "demo_max_objects",
    "demo_minimal_pairs",
    "demo_templates",
    "augment",
    "caption_safe_crops",
    "caption_negatives",
    "caption_negative_families",
    "max_length",
    "max_words",
    "batch_size",
    "gradient_accumulation_steps",
    "learning_rate",
    "min_learning_rate",
    "warmup_steps",
    "weight_decay",
    "max_grad_norm",
    "mixed_precision",
    "seed",
)


def run_defining_arguments(args: PretrainingArguments, num_processes: int) -> dict:
    """The values of `RUN_DEFINING_ARGUMENTS` and the number of processes, as JSON, kept in every checkpoint."""
    values = {name: getattr(args, name) for name in RUN_DEFINING_ARGUMENTS}
    return json.loads(json.dumps({**values, "num_processes": num_processes}))


def check_resumed_arguments(saved: dict | None, current: dict, checkpoint: Path, allow_changes: bool) -> None:
    """Refuse (`CheckpointError`) to resume with arguments that define the run differently from the checkpoint's,
    unless `allow_changes` (then warn). A checkpoint of an older version, without its arguments, is not checked."""
    if saved is None:
        logger.warning(f"{checkpoint} does not record its run's arguments: they cannot be checked.")
        return
    changed = {name: (saved.get(name), value) for name, value in current.items() if saved.get(name) != value}
    if not changed:
        return
    described = "; ".join(
        f"{'processes' if name == 'num_processes' else '--' + name.replace('_', '-')} was {old!r}, now {new!r}"
        for name, (old, new) in changed.items()
    )
    if not allow_changes:
        raise CheckpointError(
            f"--resume {checkpoint}: this run's arguments differ from the checkpoint's ({described}). Resume with "
            "the same arguments, or pass --allow-changed-arguments to continue with the new ones."
        )
    logger.warning(f"Resuming {checkpoint} with changed arguments ({described}).")


def _reset_learning_rate(scheduler, step: int) -> None:
    """Set the optimizer's learning rates to the schedule's values at `step` (after its peak changed)."""
    for group, base_lr, factor in zip(scheduler.optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
        group["lr"] = base_lr * factor(step)
    scheduler._last_lr = [group["lr"] for group in scheduler.optimizer.param_groups]


def resolve_resume(resume: str, output_dir: Path) -> Path:
    """The checkpoint folder `--resume` names: "latest" (the newest complete checkpoint of `output_dir`) or a path."""
    if resume == "latest":
        checkpoints = list_checkpoints(output_dir)
        if not checkpoints:
            raise CheckpointError(f"--resume latest: no complete checkpoint in {output_dir}.")
        return checkpoints[-1]
    path = Path(resume)
    if not (path / TRAINING_STATE).exists():
        raise CheckpointError(f"--resume {resume}: not a complete checkpoint (no {TRAINING_STATE}).")
    return path


# ----------------------------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------------------------


def evaluate_zero_shot(model, processor, held_out, k: int) -> dict:
    """Zero-shot retrieval (ITC, and ITM re-ranked) on held-out pairs."""
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

    model: MamoForPreTraining
    processor: MamoProcessor
    summary: dict


def pretrain(args: PretrainingArguments) -> PretrainingResult:
    """Run MAMO pre-training (see the module docstring).

    Raises:
        InvalidArgumentError: an argument that cannot work (checked before any work).
        OutputDirInUseError: another live run holds `output_dir`.
        CheckpointError: `resume` names a missing, incomplete or unreadable checkpoint.
        TrainingDivergedError: `max_nonfinite_steps` steps in a row had a non-finite loss or gradient.
    """
    validate_arguments(args)
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
    check_bf16_speed(args, accelerator.device)
    check_precision_and_device(args, accelerator)
    check_process_count(accelerator)
    lock = _lock_output_dir(accelerator, output_dir)
    try:
        _claim_output_dir(accelerator, args)
        return _pretrain(args, accelerator, output_dir)
    finally:
        if lock is not None:
            lock.release()


@dataclass
class _Run:
    """A pre-training run while it trains: what `_build_run` makes, the epochs change and `_finish_run` reports."""

    args: PretrainingArguments
    accelerator: Accelerator
    output_dir: Path
    model: torch.nn.Module  # as prepared by Accelerate (DDP, FSDP...)
    unwrapped: MamoForPreTraining
    processor: MamoProcessor
    dataset: torch.utils.data.Dataset
    sampler: "EpochShuffleSampler | None"
    loader: DataLoader
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    total_steps: int
    state: dict
    held_out: tuple | None
    summary: dict
    skipped: dict[str, str]  # source → reason, for this run's bad records
    guard: "DivergenceGuard"
    progress: object
    last_losses: dict = field(default_factory=dict)
    last_applied_step: int | None = None
    pairs_seen: int = 0
    started: float = field(default_factory=time.perf_counter)


def _data_error(args: PretrainingArguments, error: Exception) -> BadDataError:
    """The one-line error of a bad record (`--strict`) or of data without a usable record, met while training; a
    DataLoader worker re-raises those as a `RuntimeError` holding the original's text. Any other error is raised."""
    last_line = str(error).strip().splitlines()[-1] if str(error).strip() else ""
    kind = next((name for name in ("BadRecordError", "NoUsableRecordsError") if name in last_line), None)
    if isinstance(error, RuntimeError) and kind is None:
        raise error
    message = re.sub(r"^[\w.]*(BadRecordError|NoUsableRecordsError): ", "", last_line)
    if isinstance(error, BadRecordError) or kind == "BadRecordError":
        message = message.replace(
            " (they are reported in the items' `skipped` field)", " (they are counted and listed)"
        )
        return BadDataError(f"--strict: {message.replace('pass strict=False', 'drop --strict')}")
    return BadDataError(f"{'--hf-dataset' if args.hf_dataset else '--train-file'}: {message}")


@contextlib.contextmanager
def data_errors_named(flag: str):
    """Turn what the data readers raise for a bad file (a `ValueError` or `OSError` naming it) into a
    `BadDataError` that the command line prints as one line after `flag`."""
    try:
        yield
    except PretrainingError:
        raise
    except (ValueError, OSError) as error:
        raise BadDataError(f"{flag}: {error}") from None


def _pretrain(args: PretrainingArguments, accelerator: Accelerator, output_dir: Path) -> PretrainingResult:
    run = _build_run(args, accelerator, output_dir)
    run.model.train()
    try:
        while run.state["step"] < run.total_steps:
            try:
                _train_epoch(run)
            except (BadRecordError, NoUsableRecordsError, RuntimeError) as error:
                raise _data_error(args, error) from None
    finally:  # ends the progress bar's line, so that an error or an interruption starts a line of its own
        run.progress.close()
    return _finish_run(run, elapsed=time.perf_counter() - run.started)


def _build_run(args: PretrainingArguments, accelerator: Accelerator, output_dir: Path) -> _Run:
    """Model, data, optimizer and schedule, the state of a resumed run, the trackers, and the zero-shot retrieval
    before training."""
    checkpoint = resolve_resume(args.resume, output_dir) if args.resume else None
    set_seed(args.seed)
    model, processor = build_model_and_processor(args)
    image_size = processor.image_processor.size["height"]
    with data_errors_named(args.hf_dataset and "--hf-dataset" or "--train-file"):
        dataset = build_train_dataset(args, image_size)
    check_vocabulary(args, dataset, processor.tokenizer)
    sampler = None
    if not isinstance(dataset, torch.utils.data.IterableDataset):
        sampler = EpochShuffleSampler(
            len(dataset),
            args.seed,
            batch_size=args.batch_size,
            block_size=2 if getattr(dataset, "minimal_pairs", 0) > 0 else 1,
            num_replicas=accelerator.num_processes,
            rank=accelerator.process_index,
            batches_per_step=args.gradient_accumulation_steps,
        )
    # The collator draws each pair's masks from the pair's key. The loader shards nothing itself (the sampler or the
    # stream does) and draws its workers' seeds from its own generator, so that iterating it leaves the global random
    # stream alone.
    loader = DataLoader(
        dataset,
        batch_size=args.batch_size,
        sampler=sampler,
        collate_fn=PretrainingCollator(
            processor,
            args.max_length,
            masking=JointMasking.from_config(model.config),
            negatives=caption_negatives(args),
        ),
        num_workers=args.num_workers,
        drop_last=True,
        generator=torch.Generator().manual_seed(args.seed),
    )
    optimizer = torch.optim.AdamW(optimizer_parameter_groups(model, args.weight_decay), lr=args.learning_rate)
    steps_per_epoch = None if sampler is None else sampler.batches_per_epoch // args.gradient_accumulation_steps
    total_steps = args.max_steps or args.epochs * steps_per_epoch
    if steps_per_epoch == 0 or not total_steps:  # no step would ever end: an epoch holds none
        flags = f"--batch-size {args.batch_size}"
        if args.gradient_accumulation_steps > 1:
            flags += f" × --gradient-accumulation-steps {args.gradient_accumulation_steps}"
        raise InvalidArgumentError(
            f"{flags}: {len(dataset)} pairs make no full optimizer step of {args.batch_size} × "
            f"{accelerator.num_processes} process(es) × {args.gradient_accumulation_steps} accumulated batch(es); "
            "lower them or give more data."
        )
    scheduler = get_cosine_with_min_lr_schedule_with_warmup(
        optimizer, min(args.warmup_steps, total_steps), total_steps, min_lr=args.min_learning_rate
    )
    # The schedule counts optimizer steps whatever the number of processes: it is stepped by hand, not through
    # `prepare` (which would step it once per process); checkpoints hold its state as JSON.
    prepared_model, optimizer = accelerator.prepare(model, optimizer)
    unwrapped = accelerator.unwrap_model(prepared_model)

    arguments = run_defining_arguments(args, accelerator.num_processes)
    state = {"step": 0, "micro_step": 0, "epoch": 0, "batches_in_epoch": 0, "skipped": {}, "nonfinite_steps": []}
    if checkpoint is not None:
        state = {**state, **load_checkpoint(accelerator, checkpoint, scheduler)}
        check_resumed_arguments(state.get("arguments"), arguments, checkpoint, args.allow_changed_arguments)
        if state["step"] > total_steps:
            raise InvalidArgumentError(
                f"--max-steps {total_steps} is below the step of {checkpoint} ({state['step']}): give a larger "
                "--max-steps to continue it, or start a fresh run elsewhere."
            )
        if args.allow_changed_arguments:  # the new schedule's peak and floor, at the checkpoint's step
            scheduler.base_lrs = [args.learning_rate for _ in scheduler.base_lrs]
            _reset_learning_rate(scheduler, state["step"])
        accelerator.print(f"Resumed from {checkpoint} at step {state['step']}.")
    state["arguments"] = arguments
    _init_trackers(accelerator, args, resumed_step=state["step"] if checkpoint is not None else None)

    # Every rank takes part in the evaluation: it shards the work and gathers the results over the ranks.
    with data_errors_named("--eval-file"):
        held_out = held_out_pairs(args, image_size)
    summary = {"retrieval_before": None, "retrieval_after": None}
    if held_out is not None and state["step"] == 0:
        summary["retrieval_before"] = evaluate_zero_shot(unwrapped, processor, held_out, args.eval_k)
        _log_retrieval(accelerator, summary["retrieval_before"], step=0)
        accelerator.print(f"Zero-shot retrieval before training  {_retrieval_line(summary['retrieval_before'])}")

    skipped = dict(state["skipped"])
    skipped.update((record.source, record.reason) for record in getattr(dataset, "annotation_errors", ()))
    return _Run(
        args=args,
        accelerator=accelerator,
        output_dir=output_dir,
        model=prepared_model,
        unwrapped=unwrapped,
        processor=processor,
        dataset=dataset,
        sampler=sampler,
        loader=loader,
        optimizer=optimizer,
        scheduler=scheduler,
        total_steps=total_steps,
        state=state,
        held_out=held_out,
        summary=summary,
        skipped=skipped,
        guard=DivergenceGuard(args.max_nonfinite_steps, args.loss_spike_factor),
        progress=_progress_bar(accelerator, total_steps, state["step"]),
    )


def _epoch_batches(run: _Run):
    """The batches of the current epoch, from the position the state records (the start, or a resumed position)."""
    state = run.state
    if hasattr(run.dataset, "set_epoch"):
        run.dataset.set_epoch(state["epoch"])
    if run.sampler is not None:
        run.sampler.set_epoch(state["epoch"], state["batches_in_epoch"])
        return run.loader
    if state["batches_in_epoch"]:
        return run.accelerator.skip_first_batches(run.loader, state["batches_in_epoch"])
    return run.loader


def _train_epoch(run: _Run) -> None:
    """Train until the end of the epoch or the last step: micro-batches accumulate until an optimizer step. An epoch
    that gives no batch at all (an empty stream, every record bad) stops the run instead of looping forever."""
    state, window, batches = run.state, [], 0  # the losses of this optimizer step's micro-batches
    for batches, batch in enumerate(_epoch_batches(run), 1):
        if not window:
            queue = run.unwrapped.queue_state()
        run.skipped.update((record.source, record.reason) for record in batch.skipped)
        outputs = _forward_backward(run.accelerator, run.model, batch, run.args, state["micro_step"])
        window.append(_loss_vector(outputs))
        state["micro_step"] += 1
        state["batches_in_epoch"] += 1
        run.pairs_seen += batch["input_ids"].shape[0] * run.accelerator.num_processes
        if not run.accelerator.sync_gradients:
            continue
        _optimizer_step(run, _mean_losses(run.accelerator, window), queue)
        window = []
        if state["step"] >= run.total_steps:
            return
    if batches == 0 and state["batches_in_epoch"] == 0:
        flag = "--hf-dataset" if run.args.hf_dataset else "--train-file"
        raise BadDataError(
            f"{flag}: an epoch gave no batch of {run.args.batch_size} pairs: the data is empty or every record is "
            "bad (the skipped records are counted in the log)."
        )
    state["epoch"] += 1
    state["batches_in_epoch"] = 0


def _optimizer_step(run: _Run, losses: dict[str, float], queue: dict | None) -> None:
    """Apply the accumulated gradients (or skip a non-finite step, restoring the ITC queue to `queue`), update the
    teacher, then log and checkpoint on schedule."""
    state, args = run.state, run.args
    state["step"] += 1
    if run.guard.check(state["step"], losses, _gradient_norm(run.accelerator, run.model, args)):
        run.optimizer.step()
        run.scheduler.step()
        run.unwrapped.update_teacher()
        run.last_losses, run.last_applied_step = losses, state["step"]  # the summary reports an applied step
    else:
        run.unwrapped.load_queue_state(queue)
        state["nonfinite_steps"].append(state["step"])
    run.optimizer.zero_grad()
    run.progress.update(1)
    pairs_per_second = run.pairs_seen / (time.perf_counter() - run.started)
    run.progress.set_postfix(loss=f"{losses['loss']:.3f}", pairs_per_s=f"{pairs_per_second:.0f}")
    if state["step"] % args.log_every == 0 or state["step"] == run.total_steps:
        _log_step(run.accelerator, state, losses, run.scheduler, len(run.skipped))
    if args.checkpoint_every and state["step"] % args.checkpoint_every == 0:
        state["skipped"] = run.skipped = _gather_skipped(run.skipped)
        save_checkpoint(run.accelerator, run.output_dir, state, args.save_total_limit, run.unwrapped, run.scheduler)


def _finish_run(run: _Run, elapsed: float) -> PretrainingResult:
    """Zero-shot retrieval after training, then (main process) the model, processor, summary and card."""
    accelerator, args, summary = run.accelerator, run.args, run.summary
    skipped = _gather_skipped(run.skipped)
    summary.update(
        steps=run.state["step"],
        final_losses=run.last_losses,
        final_losses_step=run.last_applied_step,
        seconds=round(elapsed, 1),
        skipped_records=skipped,
        nonfinite_steps=run.state["nonfinite_steps"],
        loss_spikes=run.guard.spikes,
    )
    if run.last_applied_step != run.state["step"]:
        logger.warning(
            f"The last {run.state['step'] - (run.last_applied_step or 0)} step(s) had non-finite losses and were "
            f"skipped; the summary reports the losses of step {run.last_applied_step}, the last one applied."
        )
    if run.held_out is not None:
        summary["retrieval_after"] = evaluate_zero_shot(run.unwrapped, run.processor, run.held_out, args.eval_k)
        _log_retrieval(accelerator, summary["retrieval_after"], step=run.state["step"])
        accelerator.print(f"Zero-shot retrieval after training   {_retrieval_line(summary['retrieval_after'])}")
    assert_finite_weights(
        run.unwrapped, "final model"
    )  # on every rank (they hold the same weights): all stop together
    if accelerator.is_main_process:
        save_final_model(run.output_dir, run.unwrapped, run.processor)
        (run.output_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
        _plot_training_curves(run.output_dir)
        accelerator.print(_skip_report(skipped))
        hub_model_id = (args.hub_model_id or run.output_dir.name) if args.push_to_hub else None
        finish_run(run.output_dir, hub_model_id, **_card_arguments(args, summary, run.output_dir))
    _end_training(accelerator)
    return PretrainingResult(model=run.unwrapped, processor=run.processor, summary=summary)


def _plot_training_curves(output_dir: Path) -> None:
    """`training_curves.png` beside the model: every `train/*` value of the CSV log against the step (nothing
    without a CSV log)."""
    metrics_csv = output_dir / "logs" / "mamo" / "metrics.csv"
    curves = read_curves(metrics_csv) if metrics_csv.exists() else {}
    if curves:
        plot_curves(curves, output_dir / "training_curves.png")


def _log_retrieval(accelerator: Accelerator, metrics: dict, step: int) -> None:
    """The zero-shot retrieval recalls, to the trackers (`zero_shot/itc_txt_r1`, ...), beside the training losses."""
    accelerator.log(
        {f"zero_shot/{kind}_{name}": value for kind, values in metrics.items() for name, value in values.items()},
        step=step,
    )


def _log_step(accelerator: Accelerator, state: dict, losses: dict, scheduler, skipped_records: int) -> None:
    accelerator.log(
        {
            **{f"train/{name}": value for name, value in losses.items()},
            "train/learning_rate": scheduler.get_last_lr()[0],
            "train/skipped_records": skipped_records,
            "train/nonfinite_steps": len(state["nonfinite_steps"]),
        },
        step=state["step"],
    )


def seed_micro_step(seed: int, micro_step: int) -> None:
    """Seed the global random stream (dropout) from (seed, micro-step): a resumed run draws exactly what the
    uninterrupted run drew, with no random state stored in the checkpoint."""
    torch.manual_seed(seed * 1_000_003 + micro_step + 1)


def _forward_backward(accelerator: Accelerator, model, batch: dict, args, micro_step: int):
    """One micro-batch (its masks drawn by the collator): forward and backward; gradients accumulate until
    `accelerator.sync_gradients`."""
    batch = {name: value.to(accelerator.device) for name, value in batch.items()}
    generator = step_generator(args.seed, micro_step, accelerator.device)
    seed_micro_step(args.seed, micro_step)
    with accelerator.accumulate(model):
        outputs = model(**batch, generator=generator)
        accelerator.backward(outputs.loss)
    return outputs


def _gradient_norm(accelerator: Accelerator, model, args) -> float | None:
    """The global gradient norm (the gradients are clipped to `max_grad_norm` when it is > 0). Under fp16 it is
    `None`: there the gradient scaler skips steps with infinite gradients itself (and must see them to lower its
    scale)."""
    if args.mixed_precision == "fp16":
        return None
    max_norm = args.max_grad_norm if args.max_grad_norm > 0 else math.inf
    norm = accelerator.clip_grad_norm_(model.parameters(), max_norm)
    return None if norm is None else float(norm)  # DeepSpeed clips inside its own step and returns no norm


class DivergenceGuard:
    """Decides whether an optimizer step is applied: a step whose loss terms or gradient norm are not finite is
    skipped, and `max_consecutive` skipped steps in a row stop the run (`TrainingDivergedError`, naming the step
    and the non-finite terms). A finite loss above `spike_factor` × the median of the last 100 steps' losses is
    applied but logged as a spike (`spikes` lists their steps)."""

    def __init__(self, max_consecutive: int, spike_factor: float, history: int = 100):
        self.max_consecutive, self.spike_factor = max_consecutive, spike_factor
        self.consecutive, self.spikes, self.recent = 0, [], deque(maxlen=history)

    def check(self, step: int, losses: dict[str, float], gradient_norm: float | None) -> bool:
        """`True` to apply the step, `False` to skip it; raises after too many skipped steps in a row."""
        bad = [name for name, value in losses.items() if not math.isfinite(value)]
        if gradient_norm is not None and not math.isfinite(gradient_norm):
            bad.append("grad_norm")
        if bad:
            self.consecutive += 1
            logger.warning(f"Step {step}: non-finite {', '.join(bad)}; the step is skipped (weights unchanged).")
            if self.consecutive >= self.max_consecutive:
                raise TrainingDivergedError(
                    f"Training diverged: {self.consecutive} steps in a row up to step {step} had a non-finite "
                    f"{', '.join(bad)}. The weights were not updated by those steps and the checkpoints are finite; "
                    "lower --learning-rate, raise --warmup-steps or check the data, then --resume."
                )
            return False
        self.consecutive = 0
        loss = losses["loss"]
        if self.spike_factor and self.recent and loss > self.spike_factor * statistics.median(self.recent):
            self.spikes.append(step)
            logger.warning(
                f"Step {step}: loss spike, {loss:.4g} is more than {self.spike_factor:g}× the running median "
                f"({statistics.median(self.recent):.4g})."
            )
        self.recent.append(loss)
        return True


# The total, each objective of `PRETRAINING_OBJECTIVES` and the MLM accuracy.
LOGGED_LOSSES = ("loss", *(f"loss_{name}" for name in OBJECTIVES), "mlm_accuracy")


def _loss_vector(outputs) -> dict[str, torch.Tensor]:
    """The micro-batch's losses (and MLM accuracy), detached."""
    return {
        name: getattr(outputs, name).detach().float()
        for name in LOGGED_LOSSES
        if getattr(outputs, name, None) is not None
    }


def _mean_losses(accelerator: Accelerator, window: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    """An optimizer step's losses: the mean over its micro-batches and over the ranks (a NaN anywhere stays NaN)."""
    names = list(window[0])
    values = torch.stack([torch.stack([losses[name] for losses in window]).mean() for name in names])
    values = accelerator.reduce(values, reduction="mean")
    return dict(zip(names, values.tolist()))


def _data_description(args: PretrainingArguments) -> tuple[str, list[str]]:
    """The training data in words, and the `datasets` entries of the model card."""
    if args.hf_dataset:
        return f"the `datasets` folder {Path(args.hf_dataset).name}", [Path(args.hf_dataset).name]
    if args.train_file:
        try:
            shards = shard_format(args.train_file)  # the patterns' suffixes; checked on the files before the run
        except ValueError:
            shards = None
        if shards:
            # A shard pattern names no dataset; its folder does (`laion400m/{00000..41407}.tar`).
            names = list(dict.fromkeys(Path(file).parent.name or Path(file).stem for file in args.train_file))
            return f"the {_SHARD_NAMES[shards]} shards " + ", ".join(args.train_file), names
        names = [Path(file).stem for file in args.train_file]
        return "the caption files " + ", ".join(names), names
    return "the built-in generated shape scenes of mamo_hf", ["mamo_hf demo scenes"]


def _card_arguments(args: PretrainingArguments, summary: dict, output_dir: Path) -> dict:
    """What the model card of a pre-training run says (see `mamo_hf.hub.create_model_card`)."""
    data, dataset_names = _data_description(args)
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
        "datasets": dataset_names,
        "base_model": args.init,
        "results": results,
        "summary": f"A MAMO model pre-trained with `mamo-hf pretrain` on {data}.",
        "training": training,
    }


def _gather_skipped(skipped: dict[str, str]) -> dict[str, str]:
    """The bad records met by every rank (source → reason)."""
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
    return tqdm(
        total=total,
        initial=initial,
        disable=not accelerator.is_local_main_process,
        desc="pre-training",
        unit="step",
        dynamic_ncols=True,
    )


__all__ = ["CSVTracker", "MamoTeacherUpdateCallback", "PretrainingArguments", "PretrainingResult", "pretrain"]
