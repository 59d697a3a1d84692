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
"""Checkpoints of a pre-training run: written atomically, resumed exactly, refused when they cannot be trusted.

A checkpoint `checkpoint-<step>` holds the model (safetensors) and the optimizer state of `Accelerator.save_state`,
and, as JSON (`training_state.json`), the data position, the counters, the scheduler state and the arguments that
define the run (`RUN_DEFINING_ARGUMENTS`), which a resumed run must keep.
"""

import contextlib
import json
import os
import re
import shutil
import zipfile
from pathlib import Path

import torch
from accelerate import Accelerator
from safetensors import SafetensorError, safe_open
from transformers.utils import logging

from ..errors import CheckpointError, InvalidArgumentError, TrainingDivergedError, first_line
from .arguments import RUN_DEFINING_ARGUMENTS, PretrainingArguments, flag
from .manifest import SUMMARY_FILE, RunManifest
from .optimization import reset_learning_rate

logger = logging.get_logger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"
TRAINING_STATE = "training_state.json"
# Files of `Accelerator.save_state` that a checkpoint must hold (model weights in safetensors, the optimizer state
# loaded with `weights_only=True`); the scheduler state, the data position and the counters are JSON.
CHECKPOINT_FILES = ("model.safetensors", "optimizer.bin", TRAINING_STATE)


def save_checkpoint(
    accelerator: Accelerator, output_dir: Path, state: dict, save_total_limit: int, model, scheduler
) -> Path:
    """Write `checkpoint-<step>` atomically: everything goes to a temporary folder, renamed once complete, so an
    interrupted save never replaces (or looks like) the last good checkpoint, and keep the `save_total_limit` newest.

    Nothing in it is a pickle that loading would execute: the random streams are functions of the step
    (`mamo_hf.training.sampling`), so Accelerate's pickled RNG states are not kept. Refuses
    (`TrainingDivergedError`) to write non-finite weights.
    """
    assert_finite_weights(model, f"checkpoint of step {state['step']}")
    final = output_dir / f"{CHECKPOINT_PREFIX}{state['step']}"
    staging = output_dir / f".{final.name}.tmp"
    if accelerator.is_main_process:
        RunManifest(output_dir).record(staging.name, final.name)  # recorded before written: a crash leaves only ours
        if staging.exists():
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
    except (OSError, RuntimeError, SafetensorError) as error:  # SafetensorError: a failed safetensors write
        if isinstance(error, RuntimeError) and "inline_container" not in str(error) and "write" not in str(error):
            raise
        shutil.rmtree(staging, ignore_errors=True)
        reason = getattr(error, "strerror", None) or _os_message(error)
        raise CheckpointError(
            f"--output-dir {staging.parent}: could not write the {what} ({reason}); nothing partial was left, the "
            "last complete checkpoint is kept: free space, then run again with --resume latest."
        ) from None


def output_dir_error(error: OSError, output_dir: Path) -> CheckpointError | None:
    """An `OSError` on a path in `output_dir` (the folder deleted, made read-only or full while the run trains) as
    one line saying so; `None` for any other."""
    if error.filename is None:
        return None
    folder, path = Path(os.path.abspath(output_dir)), Path(os.path.abspath(error.filename))
    if path != folder and folder not in path.parents:
        return None
    if not folder.is_dir():
        return CheckpointError(
            f"--output-dir {output_dir} was deleted during the run: its checkpoints went with it; start the run again."
        )
    return CheckpointError(
        f"--output-dir {output_dir}: could not write {path.relative_to(folder)} ({error.strerror}); the last "
        "complete checkpoint is kept: make the folder writable or free space, then run again with --resume latest."
    )


def _os_message(error: Exception) -> str:
    """The system's words in a writer's error: safetensors wraps them (`IoError(Os { ..., message: "No space left on
    device" })`); torch's first line otherwise."""
    found = re.search(r'message: "([^"]+)"', str(error))
    return found.group(1) if found else first_line(error)


def save_final_model(output_dir: Path, model, processor) -> None:
    """`save_pretrained` of the model and the processor into a staging folder, then moved into `output_dir` file by
    file: a failed save (a full disk) leaves no `config.json` without its weights."""
    staging = output_dir / ".final-model.tmp"
    manifest = RunManifest(output_dir)
    manifest.record(staging.name)
    shutil.rmtree(staging, ignore_errors=True)
    with written_or_cleared(staging, "final model"):
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
    manifest.record(*(path.name for path in staging.iterdir()))
    for path in staging.iterdir():
        os.replace(path, output_dir / path.name)
    staging.rmdir()


def load_checkpoint(accelerator: Accelerator, checkpoint: Path, scheduler) -> dict:
    """Restore a `save_checkpoint` folder into the prepared model and optimizer and `scheduler`; return the
    training state. Missing or unreadable files raise `CheckpointError` naming them."""
    for name in CHECKPOINT_FILES:
        if not (checkpoint / name).is_file():
            raise CheckpointError(f"Cannot resume from {checkpoint}: {name} is missing.")
    state, scheduler_state = _read_training_state(checkpoint)
    try:
        accelerator.load_state(str(checkpoint))
    except Exception as error:  # safetensors, torch.load and load_state_dict each raise their own kind
        earlier = sorted(Path(checkpoint).parent.glob("checkpoint-*"), key=lambda path: path.stat().st_mtime)
        earlier = [path for path in earlier if path != Path(checkpoint)]
        advice = f"; resume from an earlier one with --resume {earlier[-1]}" if earlier else ""
        # torch.load's refusal of a damaged pickle starts with advice to load it unsafely: not what to tell a user.
        reason = "a damaged file" if "Weights only load failed" in str(error) else first_line(error).rstrip(".")
        what = damaged_state_file(checkpoint) or "the model or optimizer state"
        raise CheckpointError(f"Cannot resume from {checkpoint}: {what} is unreadable ({reason}){advice}.") from error
    scheduler.load_state_dict(scheduler_state)
    return state


def damaged_state_file(checkpoint: Path) -> str | None:
    """The checkpoint's weights or optimizer file that cannot be read, after a failed load: safetensors checks the
    weights' header against the file's size, and `torch.save` writes a zip archive whose directory is at its end
    (truncated or overwritten files fail either); `None` when both open (the failure was elsewhere)."""
    try:
        with safe_open(str(checkpoint / "model.safetensors"), framework="pt"):
            pass
    except Exception:  # safetensors raises its own kinds for a file that is not one
        return "model.safetensors"
    try:
        with zipfile.ZipFile(checkpoint / "optimizer.bin"):
            pass
    except (zipfile.BadZipFile, OSError):
        return "optimizer.bin"
    return None


def _read_training_state(checkpoint: Path) -> tuple[dict, dict]:
    """The training state of a checkpoint, checked (`training_state_problem`), and, taken out of it, the scheduler's
    state."""
    try:
        state = json.loads((checkpoint / TRAINING_STATE).read_text())
        if not isinstance(state, dict) or not isinstance(state.get("step"), int):
            raise ValueError("not an object with an integer 'step'")
        scheduler_state = state.pop("scheduler")
    except (ValueError, KeyError) as error:
        raise CheckpointError(f"Cannot resume from {checkpoint}: {TRAINING_STATE} is unreadable ({error}).") from None
    if not isinstance(scheduler_state, dict):
        raise CheckpointError(f"Cannot resume from {checkpoint}: {TRAINING_STATE} holds no scheduler state.")
    problem = training_state_problem(state, checkpoint.name)
    if problem:
        raise CheckpointError(f"Cannot resume from {checkpoint}: {TRAINING_STATE} {problem}; it was changed.")
    return state, scheduler_state


def training_state_problem(state: dict, name: str) -> str | None:
    """What is wrong with a checkpoint's training state, or None: counters that are not non-negative integers or
    do not fit together (a step other than the folder's `checkpoint-<step>`, fewer micro-batches than steps, more
    batches in the epoch than micro-batches), records of the wrong type."""

    def counter(key: str) -> bool:
        return isinstance(state.get(key), int) and not isinstance(state[key], bool) and state[key] >= 0

    step = state["step"]
    if not all(counter(key) for key in ("step", "micro_step", "epoch", "batches_in_epoch")):
        return "has counters (step, micro_step, epoch, batches_in_epoch) that are not integers >= 0"
    if name.startswith(CHECKPOINT_PREFIX) and name.removeprefix(CHECKPOINT_PREFIX) != str(step):
        return f"says step {step}, not the step of its folder {name}"
    if state["micro_step"] < step or state["batches_in_epoch"] > state["micro_step"]:
        return f"has counters that do not fit together (step {step}, micro_step {state['micro_step']}, " + (
            f"batches_in_epoch {state['batches_in_epoch']})"
        )
    skipped, nonfinite = state.get("skipped", {}), state.get("nonfinite_steps", [])
    if not isinstance(skipped, dict) or not all(isinstance(value, str) for value in skipped.values()):
        return "has a 'skipped' record that is not a mapping of sources to reasons"
    if not isinstance(nonfinite, list) or not all(isinstance(item, int) and 0 < item <= step for item in nonfinite):
        return f"has 'nonfinite_steps' that are not steps from 1 to {step}"
    return None


def checkpoint_position(checkpoint: Path) -> tuple[int, int]:
    """`(step, batches into its epoch)` of a complete checkpoint (read before the model is loaded)."""
    state, _ = _read_training_state(checkpoint)
    return state["step"], state["batches_in_epoch"]


def assert_finite_weights(model: torch.nn.Module, what: str) -> None:
    """Raise `TrainingDivergedError` if a parameter or buffer of `model` holds a NaN or an infinity."""
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise TrainingDivergedError(f"Refusing to write the {what}: {name} holds non-finite values.")


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    found = [path for path in Path(output_dir).glob(f"{CHECKPOINT_PREFIX}*") if (path / TRAINING_STATE).exists()]
    return sorted(found, key=lambda path: int(path.name.removeprefix(CHECKPOINT_PREFIX)))


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
        f"{'processes' if name == 'num_processes' else flag(name)} was {old!r}, now {new!r}"
        for name, (old, new) in changed.items()
    )
    if not allow_changes:
        raise CheckpointError(
            f"--resume {checkpoint}: this run's arguments differ from the checkpoint's ({described}). Resume with "
            "the same arguments, or pass --allow-changed-arguments to continue with the new ones."
        )
    logger.warning(f"Resuming {checkpoint} with changed arguments ({described}).")


def initial_state(args, accelerator: Accelerator, checkpoint: Path | None, scheduler) -> dict:
    """The counters of a fresh run, or those of `checkpoint` (whose model, optimizer and schedule are restored),
    checked against this run's arguments; with them, the arguments that define this run."""
    arguments = run_defining_arguments(args, accelerator.num_processes)
    state = {**FRESH_STATE, "skipped": {}, "nonfinite_steps": [], "last_losses": {}}
    if checkpoint is not None:
        state = {**state, **load_checkpoint(accelerator, checkpoint, scheduler)}
        check_resumed_arguments(state.get("arguments"), arguments, checkpoint, args.allow_changed_arguments)
        if args.allow_changed_arguments:  # the new schedule's peak and floor, at the checkpoint's step
            reset_learning_rate(scheduler, args.learning_rate, state["step"])
        accelerator.print(f"Resumed from {checkpoint} at step {state['step']}.")
    state["arguments"] = arguments
    return state


# The counters of a fresh run (`initial_state`); a checkpoint holds them as they were at its step.
FRESH_STATE = {
    "step": 0,
    "micro_step": 0,
    "epoch": 0,
    "batches_in_epoch": 0,
    "last_applied_step": None,
    "seconds": 0.0,
}


def check_resumable(args, checkpoint: Path, sampler, total_steps: int) -> None:
    """Refuse a checkpoint this run cannot continue: one beyond `--max-steps`, one of a run that already finished
    (whose model and summary are kept), or one whose data position lies beyond an epoch of this data."""
    step, position = checkpoint_position(checkpoint)
    if step > total_steps:
        raise InvalidArgumentError(
            f"--max-steps {total_steps} is below the step of {checkpoint} ({step}): give a larger --max-steps to "
            "continue it, or start a fresh run elsewhere."
        )
    if step == total_steps and (checkpoint.parent / SUMMARY_FILE).exists():
        raise InvalidArgumentError(
            f"--resume {args.resume}: the run already finished at step {step} of --max-steps {total_steps}; its "
            f"model and {SUMMARY_FILE} are kept as they are: give a larger --max-steps to continue it."
        )
    if sampler is not None and position > sampler.batches_per_epoch:
        raise CheckpointError(
            f"Cannot resume from {checkpoint}: it is {position} batches into an epoch of {sampler.batches_per_epoch}; "
            "it was changed, or it is another data's checkpoint."
        )


__all__ = [
    "CHECKPOINT_PREFIX",
    "TRAINING_STATE",
    "assert_finite_weights",
    "check_resumable",
    "check_resumed_arguments",
    "checkpoint_position",
    "initial_state",
    "list_checkpoints",
    "load_checkpoint",
    "resolve_resume",
    "run_defining_arguments",
    "training_state_problem",
    "save_checkpoint",
    "save_final_model",
]
