"""What the `Trainer` examples share: a command line with every `TrainingArguments` flag next to the example's own,
the examples' defaults for those flags, and the end of a run (the model card, whose snippet loads the task head, and
the upload of `--push_to_hub`).

Not an example itself: the examples import it from their own folder, which `python examples/<name>.py`, `accelerate
launch examples/<name>.py` and `torchrun examples/<name>.py` all put on `sys.path`.
"""

import argparse
import contextlib
import dataclasses
import math
import sys
from pathlib import Path

import torch
from transformers import HfArgumentParser, Trainer, TrainingArguments
from transformers.integrations import is_tensorboard_available

from mamo_hf.checks import MAX_IMAGE_SIZE, check_existing_path, check_model_location, check_saved_mamo
from mamo_hf.errors import InvalidArgumentError, first_line
from mamo_hf.hub import create_model_card, push_to_hub, upload_failure, upload_problem

# What every example does unless a flag says otherwise: log to TensorBoard (`<output_dir>/runs`), keep a checkpoint
# at each epoch's end (the last two) for `--resume_from_checkpoint`, and hand the collator the dataset items as they
# are (images and texts, which `remove_unused_columns` would drop since the model takes tensors).
TRAINER_DEFAULTS = {
    # TensorBoard when it is installed (the dev extra brings it); otherwise no tracker, as `mamo-hf pretrain` does.
    "report_to": "tensorboard" if is_tensorboard_available() else "none",
    "save_strategy": "epoch",
    "save_total_limit": 2,
    "remove_unused_columns": False,
    "seed": 0,
    # Pinned memory speeds copies to a GPU; without one, PyTorch warns at every DataLoader that it is not used.
    "dataloader_pin_memory": torch.cuda.is_available(),
}

# The examples' own spellings from before they took `TrainingArguments`, still accepted (and hidden from `--help`).
OLD_FLAGS = {
    "--epochs": ("num_train_epochs", float),
    "--batch-size": ("per_device_train_batch_size", int),
    "--steps": ("max_steps", int),
}


# The examples' own flags that name files or folders which must exist, and those that may name a Hub repository.
EXISTING_PATHS = ("train_file", "test_file", "image_root", "refcoco_files", "detections", "refs", "instances")
MODEL_LOCATIONS = ("init", "checkpoint")
# Integer flags that may be 0 (every other integer flag of an example is a count or a size: at least 1).
MINIMUMS = {"overlays": 0, "layer": 0}
# Integer flags with an upper bound: an image side beyond it only fills the memory (`mamo_hf.checks`').
MAXIMUMS = {"image_size": MAX_IMAGE_SIZE}


def argument_problem(arguments) -> str | None:
    """What is wrong with an example's own arguments, in one line, or None: an integer below its minimum (1 unless
    `MINIMUMS` says otherwise: counts, sizes, k), a file or folder that does not exist, a model location that is
    neither a folder nor a Hub name or a folder without a saved MAMO, an image size that the patch size does not
    divide, one of `--train_file`/`--test_file` without the other."""
    for spec in dataclasses.fields(arguments):
        value, flag = getattr(arguments, spec.name), "--" + spec.name
        minimum = MINIMUMS.get(spec.name, 1)
        if isinstance(value, int) and not isinstance(value, bool) and value < minimum:
            return f"{flag} must be an integer >= {minimum}, got {value}."
        if spec.name in MAXIMUMS and value > MAXIMUMS[spec.name]:
            return f"{flag} must be at most {MAXIMUMS[spec.name]}, got {value}."
        try:
            if spec.name in EXISTING_PATHS:
                for path in value if isinstance(value, list) else [value]:
                    check_existing_path(path, flag)
            if spec.name in MODEL_LOCATIONS:
                check_model_location(value, flag)
                if value is not None and Path(value).is_dir():
                    check_saved_mamo(value, flag)
        except InvalidArgumentError as error:
            return str(error)
    image_size, patch_size = getattr(arguments, "image_size", None), getattr(arguments, "patch_size", None)
    if image_size and patch_size and image_size % patch_size:
        return f"--image_size {image_size} must be a multiple of --patch_size {patch_size}."
    given = [name for name in ("train_file", "test_file") if getattr(arguments, name, None)]
    if len(given) == 1:
        other = "test_file" if given == ["train_file"] else "train_file"
        return f"--{given[0]} needs --{other} too (the generated data is used only when neither is given)."
    return None


def scratch_patch_problem(image_size: int, patches_per_side: int, init: str | None) -> str | None:
    """For an example whose model from scratch cuts its `image_size` images into `patches_per_side`² patches: an
    image size that this does not divide (the patch would not be whole), unless the model comes from `--init`."""
    if init is None and image_size % patches_per_side:
        return (
            f"--image_size {image_size} must be a multiple of {patches_per_side}: a model from scratch has "
            f"{patches_per_side} × {patches_per_side} patches."
        )
    return None


def training_problem(training_arguments: TrainingArguments) -> str | None:
    """What `Trainer` would fail on late, or silently get wrong, in one line, or None: batch sizes and accumulation
    below 1, a learning rate that is not a finite number >= 0, no epoch to train (without `--max_steps`), an output
    folder that is a file, fp16 on a machine without a CUDA GPU (it would train in fp32)."""
    for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
        if (value := getattr(training_arguments, name)) < 1:
            return f"--{name} must be an integer >= 1, got {value}."
    for name in ("learning_rate", "weight_decay", "max_grad_norm"):
        value = getattr(training_arguments, name)
        if not math.isfinite(value) or value < 0:
            return f"--{name} must be a finite number >= 0, got {value}."
    epochs = training_arguments.num_train_epochs
    if training_arguments.max_steps <= 0 and not (math.isfinite(epochs) and epochs > 0):
        return f"--num_train_epochs must be a finite number > 0 (or give --max_steps), got {epochs}."
    output_dir = Path(training_arguments.output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        return f"--output_dir {output_dir} is a file; give a folder to write the model into."
    if training_arguments.fp16 and not torch.cuda.is_available():
        return "--fp16 needs a CUDA GPU and none is available: drop it (or use --bf16) to train here."
    resume = training_arguments.resume_from_checkpoint
    if resume not in (None, "True", "False") and not Path(resume).is_dir():
        return f"--resume_from_checkpoint {resume}: no such checkpoint folder (give {output_dir}/checkpoint-N)."
    return None


def fail(problem: str) -> None:
    """End the example with one line, `<example>: error: <problem>` (exit status 1), for a problem found after the
    arguments were parsed: in a data file, or against the model they load."""
    raise SystemExit(f"{Path(sys.argv[0]).name}: error: {problem}")


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """`--help` shows the module docstring as written and every flag's default (the example's, where it sets one)."""


def parse_arguments(
    example_arguments: type, description: str, defaults: dict, args: list[str] | None = None, check=None
) -> tuple[object, TrainingArguments]:
    """Parse the command line (or `args`) into the example's own arguments (the dataclass `example_arguments`) and
    `TrainingArguments`; every flag has both spellings (`--output_dir`, `--output-dir`).

    `TRAINER_DEFAULTS` and the example's `defaults` (its epochs, learning rate, output folder...) become the parser's
    defaults rather than values set after parsing, so that a flag given on the command line always wins. The
    example's own arguments are checked (`argument_problem`, then `check(arguments)` when given, which returns a
    problem or None): a problem ends the run before any work with one line, `<example>: error: ...` (exit status 2).
    """
    known = {field.name for dtype in (example_arguments, TrainingArguments) for field in dataclasses.fields(dtype)}
    defaults = {**TRAINER_DEFAULTS, **defaults}
    if unknown := sorted(set(defaults) - known):
        raise ValueError(f"defaults for arguments that do not exist: {unknown}")
    parser = HfArgumentParser(
        (example_arguments, TrainingArguments), description=description, formatter_class=HelpFormatter
    )
    for flag, (name, type_) in OLD_FLAGS.items():
        parser.add_argument(flag, dest=name, type=type_, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    parser.set_defaults(**defaults)
    try:
        arguments, training_arguments = parser.parse_args_into_dataclasses(args=args)
    except ValueError as error:  # HfArgumentParser's refusal of flags it does not know: one line, as argparse's
        parser.exit(2, f"{parser.prog}: error: {first_line(error)}\n")
    problem = argument_problem(arguments) or (check(arguments) if check else None)
    problem = problem or training_problem(training_arguments)
    if not problem and training_arguments.push_to_hub and (reason := upload_problem(training_arguments.hub_token)):
        problem = f"--push_to_hub would fail after training: {reason}."
    if problem:  # one line: the usage of an example lists every TrainingArguments flag
        parser.exit(2, f"{parser.prog}: error: {problem}\n")
    return arguments, training_arguments


@contextlib.contextmanager
def reading(flags: str):
    """Read the data files named by `flags`: what the readers raise for a bad file (a `ValueError` or `OSError`
    naming the file and the record) ends the run before any training with one line, `<example>: error: <flags>:
    <the reader's first line>`, instead of a traceback."""
    try:
        yield
    except (ValueError, OSError) as error:
        fail(f"{flags}: {first_line(error)}")


def write_card_and_push(trainer: Trainer, **card_arguments) -> None:
    """The end of every example, on the main process, after `trainer.save_model()`: write the model card
    (`mamo_hf.hub.create_model_card(**card_arguments)`, with a usage snippet that loads the trained head) to the
    output folder and, with `--push_to_hub`, upload the folder (model, processor, code, card) to the repository
    that `Trainer` created (`--hub_model_id`, or the output folder's name)."""
    if not trainer.is_world_process_zero():
        return
    args = trainer.args
    card = create_model_card(**card_arguments, model_class=type(trainer.model).__name__)
    card.save(Path(args.output_dir) / "README.md")
    if args.push_to_hub:
        try:
            push_to_hub(args.output_dir, trainer.hub_model_id, private=args.hub_private_repo, token=args.hub_token)
        except Exception as error:  # the Hub client's: an HTTP refusal, a network that cannot be reached
            if (reason := upload_failure(error)) is None:
                raise
            fail(f"--push_to_hub: the model is saved in {args.output_dir}, but the upload failed: {reason}.")
        print(f"Pushed {args.output_dir} to the Hub repository {trainer.hub_model_id}.")
