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
"""The pre-training loop: `pretrain(args)` starts a run (or resumes one), trains it step by step and finishes it.

A step accumulates `gradient_accumulation_steps` micro-batches, then applies them (or skips a non-finite step), updates
the EMA teacher once, logs and checkpoints on schedule. What each part does lives in the modules of this package:
the arguments' checks (`validation`), the output folder (`run_dir`), the devices (`devices`), the model (`model`),
the data (`data`, `sampling`), the optimisation (`optimization`), checkpoints (`checkpoints`) and reports
(`reporting`).
"""

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from transformers.utils import logging

from ..data.records import BadRecordError, NoUsableRecordsError
from ..errors import BadDataError, InvalidArgumentError, PretrainingError
from ..evaluation.retrieval import evaluate_retrieval
from ..hub import finish_run, upload_failure
from ..modeling_mamo import MamoForPreTraining
from ..processing_mamo import MamoProcessor
from . import checkpoints, data, devices, optimization, reporting, run_dir, sampling
from .arguments import PretrainingArguments
from .manifest import LOGS, SUMMARY_FILE, RunManifest
from .model import build_model_and_processor
from .validation import validate_arguments

logger = logging.get_logger(__name__)

CARD_FILE = "README.md"  # the model card, written by `mamo_hf.hub.finish_run`


# Set by `request_stop`; checked after every micro-batch of a run.
_STOP_REQUESTED = threading.Event()


def request_stop() -> None:
    """Ask the running `pretrain` to stop: it raises `KeyboardInterrupt` after its current micro-batch (checkpoints
    are written atomically, so every one on disk stays whole). `mamo-hf` calls it on Ctrl-C, whose own
    `KeyboardInterrupt` Python drops when it arrives while a DataLoader worker is being forked (an exception in a
    fork handler is printed and ignored); from another thread it stops a run cleanly."""
    _STOP_REQUESTED.set()


@dataclass
class PretrainingResult:
    """What `pretrain` returns: the trained model and its processor (also saved to `output_dir`), and a summary
    (steps, last losses, zero-shot retrieval before and after, skipped records, seconds), saved as
    `pretraining_summary.json`."""

    model: MamoForPreTraining
    processor: MamoProcessor
    summary: dict


def pretrain(args: PretrainingArguments) -> PretrainingResult:
    """Run MAMO pre-training: AdamW without decay on biases and norms, cosine schedule with warm-up to a floor,
    gradient accumulation with one teacher update per optimizer step, mixed precision, gradient clipping, atomic
    checkpoints with exact resume, TensorBoard and CSV logs, and zero-shot retrieval before and after training.

    Raises:
        InvalidArgumentError: an argument that cannot work (checked before any work).
        OutputDirInUseError: another live run holds `output_dir`.
        CheckpointError: `resume` names a missing, incomplete or unreadable checkpoint.
        TrainingDivergedError: `max_nonfinite_steps` steps in a row had a non-finite loss or gradient.
        BadDataError: the training data cannot be read.
    """
    _STOP_REQUESTED.clear()
    validate_arguments(args)
    output_dir = Path(args.output_dir)
    accelerator = devices.build_accelerator(args)
    lock = run_dir.lock_output_dir(accelerator, output_dir)
    try:
        run_dir.claim_output_dir(accelerator, output_dir, bool(args.resume), args.overwrite_output_dir)
        run = _start_run(args, accelerator, output_dir)
        _train(run)
        return _finish_run(run)
    except OSError as error:
        raise checkpoints.output_dir_error(error, output_dir) or error from None
    finally:
        if lock is not None:
            lock.release()


@dataclass
class _Run:
    """A pre-training run while it trains: what `_start_run` makes, the steps change and `_finish_run` reports."""

    args: PretrainingArguments
    accelerator: Accelerator
    output_dir: Path
    model: torch.nn.Module  # as prepared by Accelerate (DDP, FSDP...)
    unwrapped: MamoForPreTraining
    processor: MamoProcessor
    dataset: torch.utils.data.Dataset
    sampler: sampling.EpochShuffleSampler | None
    loader: DataLoader
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    total_steps: int
    state: dict
    held_out: tuple | None
    summary: dict
    skipped: dict[str, str]  # source → reason, for this run's bad records
    guard: optimization.DivergenceGuard
    progress: object
    pairs_seen: int = 0
    started: float = field(default_factory=time.perf_counter)

    def seconds(self) -> float:
        """Training seconds of the whole run: those of earlier sessions (a resumed run) and of this one."""
        return round(self.state["seconds"] + time.perf_counter() - self.started, 1)


def _start_run(args: PretrainingArguments, accelerator: Accelerator, output_dir: Path) -> _Run:
    """Model, data, optimizer and schedule, the state of a resumed run, the trackers, and the zero-shot retrieval
    before training."""
    checkpoint = checkpoints.resolve_resume(args.resume, output_dir) if args.resume else None
    set_seed(args.seed)
    model, processor = build_model_and_processor(args)
    image_size = processor.image_processor.size["height"]
    dataset = _training_data(args, processor)
    loader, sampler = data.build_loader(
        args, dataset, processor, model.config, accelerator.num_processes, accelerator.process_index
    )
    total_steps = _total_steps(args, sampler, accelerator.num_processes)
    optimizer, scheduler = optimization.build_optimizer_and_schedule(model, args, total_steps)
    if checkpoint is not None:
        checkpoints.check_resumable(args, checkpoint, sampler, total_steps)
    # The schedule counts optimizer steps whatever the number of processes: it is stepped by hand, not through
    # `prepare` (which would step it once per process); checkpoints hold its state as JSON.
    devices.expect_unused_parameters(accelerator, model)
    prepared_model, optimizer = accelerator.prepare(model, optimizer)
    state = checkpoints.initial_state(args, accelerator, checkpoint, scheduler)
    if accelerator.is_main_process:
        RunManifest(output_dir).record(LOGS)
    reporting.init_trackers(accelerator, args, resumed_step=state["step"] if checkpoint is not None else None)
    unwrapped = accelerator.unwrap_model(prepared_model)
    with data.data_errors_named("--eval-file"):
        held_out = data.held_out_pairs(args, image_size)
    summary = {"retrieval_before": None, "retrieval_after": None}
    if held_out is not None and state["step"] == 0:
        summary["retrieval_before"] = _evaluate(accelerator, unwrapped, processor, held_out, args.eval_k, 0, "before")
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
        guard=optimization.DivergenceGuard(args.max_nonfinite_steps, args.loss_spike_factor),
        progress=reporting.progress_bar(accelerator, total_steps, state["step"]),
    )


def _training_data(args: PretrainingArguments, processor):
    """The training dataset, its files' problems as one line, its captions readable by the tokenizer."""
    with data.data_errors_named(args.hf_dataset and "--hf-dataset" or "--train-file"):
        dataset = data.build_train_dataset(args, processor.image_processor.size["height"])
    data.check_vocabulary(args, dataset, processor.tokenizer)
    return dataset


def _total_steps(args: PretrainingArguments, sampler: sampling.EpochShuffleSampler | None, num_processes: int) -> int:
    """`--max-steps`, or `--epochs` whole epochs of optimizer steps (a stream, without a sampler, always has
    `--max-steps`); an epoch that holds no optimizer step is refused."""
    steps_per_epoch = None if sampler is None else sampler.batches_per_epoch // args.gradient_accumulation_steps
    total_steps = args.max_steps or args.epochs * steps_per_epoch
    if steps_per_epoch == 0 or not total_steps:  # no step would ever end: an epoch holds none
        flags = f"--batch-size {args.batch_size}"
        if args.gradient_accumulation_steps > 1:
            flags += f" × --gradient-accumulation-steps {args.gradient_accumulation_steps}"
        raise InvalidArgumentError(
            f"{flags}: {sampler.size} pairs make no full optimizer step of {args.batch_size} × {num_processes} "
            f"process(es) × {args.gradient_accumulation_steps} accumulated batch(es); lower them or give more data."
        )
    return total_steps


def _evaluate(accelerator: Accelerator, model, processor, held_out, k: int, step: int, when: str) -> dict:
    """Zero-shot retrieval (ITC, and ITM re-ranked) on the held-out pairs, logged at `step` and printed. Every rank
    takes part: the evaluation shards the work and gathers the results over the ranks."""
    was_training = model.training
    images, captions, image_to_texts, text_to_image = held_out
    metrics = evaluate_retrieval(model, processor, images, captions, image_to_texts, text_to_image, k=k)
    model.train(was_training)
    reporting.log_retrieval(accelerator, metrics, step=step)
    accelerator.print(f"Zero-shot retrieval {when + ' training':<16} {reporting.retrieval_line(metrics)}")
    return metrics


def _train(run: _Run) -> None:
    """Train epoch after epoch up to the last step; a bad record (with `--strict`), or data without a usable record,
    met in a DataLoader worker ends the run with one line."""
    run.model.train()
    try:
        while run.state["step"] < run.total_steps:
            try:
                _train_epoch(run)
            except (BadRecordError, NoUsableRecordsError, RuntimeError) as error:
                raise data.data_error(run.args, error) from None
    finally:  # ends the progress bar's line, so that an error or an interruption starts a line of its own
        run.progress.close()


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
        if _STOP_REQUESTED.is_set():
            raise KeyboardInterrupt("stop requested")
        outputs = forward_backward(run.accelerator, run.model, batch, run.args.seed, state["micro_step"])
        window.append(logged_values(outputs))
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


def forward_backward(accelerator: Accelerator, model, batch: dict, seed: int, micro_step: int):
    """One micro-batch of a run seeded `seed` (its masks drawn by the collator): forward and backward; gradients
    accumulate until `accelerator.sync_gradients`. The random draws (hard negatives, dropout) are functions of
    `(seed, micro_step)`, so that a resumed run draws what the uninterrupted one drew."""
    batch = {name: value.to(accelerator.device) for name, value in batch.items()}
    generator = sampling.step_generator(seed, micro_step, accelerator.device)
    sampling.seed_micro_step(seed, micro_step)
    with accelerator.accumulate(model):
        outputs = model(**batch, generator=generator)
        accelerator.backward(outputs.loss)
    return outputs


def _optimizer_step(run: _Run, losses: dict[str, float], queue: dict | None) -> None:
    """Apply the accumulated gradients (or skip a non-finite step, restoring the ITC queue to `queue`), update the
    teacher, then log and checkpoint on schedule."""
    state, args = run.state, run.args
    state["step"] += 1
    norm = optimization.gradient_norm(run.accelerator, run.model, args.max_grad_norm, args.mixed_precision == "fp16")
    if run.guard.check(state["step"], losses, norm):
        run.optimizer.step()
        run.scheduler.step()
        run.unwrapped.update_teacher()
        state["last_losses"], state["last_applied_step"] = losses, state["step"]  # the summary reports an applied step
    else:
        run.unwrapped.load_queue_state(queue)
        state["nonfinite_steps"].append(state["step"])
    run.optimizer.zero_grad()
    run.progress.update(1)
    pairs_per_second = run.pairs_seen / (time.perf_counter() - run.started)
    run.progress.set_postfix(loss=f"{losses['loss']:.3f}", pairs_per_s=f"{pairs_per_second:.0f}")
    if state["step"] % args.log_every == 0 or state["step"] == run.total_steps:
        reporting.log_step(run.accelerator, state, losses, run.scheduler, len(run.skipped))
    if args.checkpoint_every and state["step"] % args.checkpoint_every == 0:
        state["skipped"] = run.skipped = reporting.gather_skipped(run.skipped)
        state["seconds"], run.started = run.seconds(), time.perf_counter()
        checkpoints.save_checkpoint(
            run.accelerator, run.output_dir, state, args.save_total_limit, run.unwrapped, run.scheduler
        )


def logged_values(outputs) -> dict[str, torch.Tensor]:
    """What a step logs of a micro-batch's outputs, detached: the total loss, each objective's loss
    (`outputs.losses`, as `loss_<name>`) and the MLM accuracy when MLM is on."""
    values = {"loss": outputs.loss, **{f"loss_{name}": loss for name, loss in outputs.losses.items()}}
    if outputs.mlm_accuracy is not None:
        values["mlm_accuracy"] = outputs.mlm_accuracy
    return {name: value.detach().float() for name, value in values.items()}


def _mean_losses(accelerator: Accelerator, window: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    """An optimizer step's losses: the mean over its micro-batches and over the ranks (a NaN anywhere stays NaN)."""
    names = list(window[0])
    values = torch.stack([torch.stack([losses[name] for losses in window]).mean() for name in names])
    values = accelerator.reduce(values, reduction="mean")
    return dict(zip(names, values.tolist()))


def _finish_run(run: _Run) -> PretrainingResult:
    """Zero-shot retrieval after training, then (main process) the model, processor, summary and card."""
    accelerator, args, summary, state = run.accelerator, run.args, run.summary, run.state
    skipped = reporting.gather_skipped(run.skipped)
    summary.update(
        steps=state["step"],
        final_losses=state["last_losses"],
        final_losses_step=state["last_applied_step"],
        seconds=run.seconds(),
        skipped_records=skipped,
        nonfinite_steps=state["nonfinite_steps"],
        loss_spikes=run.guard.spikes,
    )
    if state["last_applied_step"] != state["step"]:
        logger.warning(
            f"The last {state['step'] - (state['last_applied_step'] or 0)} step(s) had non-finite losses and were "
            f"skipped; the summary reports the losses of step {state['last_applied_step']}, the last one applied."
        )
    if run.held_out is not None:
        summary["retrieval_after"] = _evaluate(
            accelerator, run.unwrapped, run.processor, run.held_out, args.eval_k, run.state["step"], "after"
        )
    checkpoints.assert_finite_weights(run.unwrapped, "final model")  # on every rank (the same weights): all stop
    upload_problem = _write_results(run, summary, skipped) if accelerator.is_main_process else None
    devices.end_training(accelerator)
    if upload_problem:  # raised after every rank has ended, so that none waits for the main process
        raise PretrainingError(upload_problem)
    return PretrainingResult(model=run.unwrapped, processor=run.processor, summary=summary)


def _write_results(run: _Run, summary: dict, skipped: dict[str, str]) -> str | None:
    """The model and processor, the summary, the training curves, the skip report and the card, and the upload of
    `--push-to-hub`; returns what went wrong with the upload (the model is saved either way), or None."""
    checkpoints.save_final_model(run.output_dir, run.unwrapped, run.processor)
    RunManifest(run.output_dir).record(SUMMARY_FILE, reporting.CURVES_FILE, CARD_FILE)
    (run.output_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    reporting.plot_training_curves(run.output_dir)
    run.accelerator.print(reporting.skip_report(skipped))
    hub_model_id = (run.args.hub_model_id or run.output_dir.name) if run.args.push_to_hub else None
    try:
        finish_run(run.output_dir, hub_model_id, **reporting.card_arguments(run.args, summary, run.output_dir))
    except Exception as error:  # the Hub client's: an HTTP refusal, a network that cannot be reached
        if (reason := upload_failure(error)) is None:
            raise
        return (
            f"--push-to-hub: the model is trained and saved in {run.output_dir}, but the upload to {hub_model_id} "
            f"failed: {reason}. Upload it later with `mamo-hf push {run.output_dir} {hub_model_id}`."
        )
    return None


__all__ = ["PretrainingResult", "forward_backward", "logged_values", "pretrain", "request_stop"]
