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
"""The optimisation of a pre-training run: AdamW groups, the learning-rate schedule, gradient clipping, and the
guard that skips a step whose loss or gradient is not finite."""

import math
import statistics
from collections import deque

import torch
from accelerate import Accelerator
from transformers import get_cosine_with_min_lr_schedule_with_warmup
from transformers.utils import logging

from ..errors import TrainingDivergedError

logger = logging.get_logger(__name__)


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


def build_optimizer_and_schedule(model, args, total_steps: int):
    """AdamW over `optimizer_parameter_groups` at `args.learning_rate`, and the cosine schedule with linear warm-up
    to `args.min_learning_rate` over `total_steps` optimizer steps."""
    optimizer = torch.optim.AdamW(optimizer_parameter_groups(model, args.weight_decay), lr=args.learning_rate)
    scheduler = get_cosine_with_min_lr_schedule_with_warmup(
        optimizer, min(args.warmup_steps, total_steps), total_steps, min_lr=args.min_learning_rate
    )
    return optimizer, scheduler


def reset_learning_rate(scheduler, peak: float, step: int) -> None:
    """Give the schedule a new `peak` learning rate and set the optimizer's learning rates to its values at `step`
    (a resumed run whose `--learning-rate` changed)."""
    scheduler.base_lrs = [peak for _ in scheduler.base_lrs]
    for group, base_lr, factor in zip(scheduler.optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
        group["lr"] = base_lr * factor(step)
    scheduler._last_lr = [group["lr"] for group in scheduler.optimizer.param_groups]


def gradient_norm(accelerator: Accelerator, model, max_grad_norm: float, fp16: bool) -> float | None:
    """The global gradient norm (the gradients are clipped to `max_grad_norm` when it is > 0). Under fp16 it is
    `None`: there the gradient scaler skips steps with infinite gradients itself (and must see them to lower its
    scale)."""
    if fp16:
        return None
    max_norm = max_grad_norm if max_grad_norm > 0 else math.inf
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


__all__ = [
    "DivergenceGuard",
    "build_optimizer_and_schedule",
    "gradient_norm",
    "optimizer_parameter_groups",
    "reset_learning_rate",
]
