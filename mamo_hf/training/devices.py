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
"""The devices and processes of a pre-training run: its `Accelerator`, and the checks that it runs where and how the
arguments say (a precision the hardware has, one process group for the processes a launcher started)."""

import os
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration
from transformers.utils import logging

from ..errors import InvalidArgumentError
from .arguments import PretrainingArguments
from .reporting import trackers

logger = logging.get_logger(__name__)

CPUINFO = Path("/proc/cpuinfo")  # where `has_native_bf16` reads the CPU's flags (Linux)


def build_accelerator(args: PretrainingArguments) -> Accelerator:
    """The run's `Accelerator`, checked: a precision the device has (`check_bf16_speed`, `check_precision_and_device`)
    and one process group for every process the launcher started (`check_process_count`).

    The ITC queue is updated identically on every rank, so DDP broadcasts no buffer (`expect_unused_parameters` then
    completes the DDP options from the model).
    """
    ddp_options = DistributedDataParallelKwargs(broadcast_buffers=False)
    output_dir = Path(args.output_dir)
    accelerator = Accelerator(
        kwargs_handlers=[ddp_options],
        cpu=args.cpu,
        mixed_precision=args.mixed_precision,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        log_with=trackers(args.report_to, output_dir),
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
    )
    check_bf16_speed(args, accelerator.device)
    check_precision_and_device(args, accelerator)
    check_process_count(accelerator)
    return accelerator


def expect_unused_parameters(accelerator: Accelerator, model) -> None:
    """Tell DDP, before `prepare`, whether some parameters may get no gradient in a step: the head of an objective
    whose weight is 0, and MIM's and MRM's before a staged schedule starts them (`masked_modeling_start_step`)."""
    config = model.config
    switched_off = any(getattr(config, name) == 0 for name in config.objective_weight_names())
    if accelerator.ddp_handler is not None:
        accelerator.ddp_handler.find_unused_parameters = switched_off or config.masked_modeling_start_step > 0


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


def check_process_count(accelerator: Accelerator) -> None:
    """A launcher that started several processes must get a process group: without `--cpu` on a machine without
    GPUs, Accelerate would give each process a run of its own, all racing for one output folder."""
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and accelerator.num_processes != launched:
        raise InvalidArgumentError(
            f"--cpu is needed: the launcher started {launched} processes but Accelerate sees "
            f"{accelerator.num_processes} (no GPU here); add --cpu to run them as one CPU run."
        )


def end_training(accelerator: Accelerator) -> None:
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


__all__ = ["build_accelerator", "check_bf16_speed", "end_training", "expect_unused_parameters", "has_native_bf16"]
