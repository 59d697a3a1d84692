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

`pretrain(PretrainingArguments(...))` is the loop behind `mamo-hf pretrain` and `examples/pretrain.py`
(`mamo_hf.training.loop`); for `Trainer`, use `MamoTeacherUpdateCallback`. The package's modules, from the arguments
to the loop:

- `arguments`: `PretrainingArguments` and the facts of each field (bounds, defines-the-run, on-the-card);
- `validation`: the checks of the arguments before any work;
- `run_dir`: the output folder, its lock and its claim;
- `devices`: the `Accelerator` and the checks of precision and processes;
- `model`, `data`, `sampling`: the model, the data and its order, the random streams;
- `optimization`: AdamW, the schedule, the guard against non-finite steps;
- `checkpoints`: atomic checkpoints, exact resume;
- `reporting`: trackers, logs, curves, the card;
- `loop`: `pretrain`.
"""

from ..errors import (
    BadDataError,
    CheckpointError,
    InvalidArgumentError,
    OutputDirInUseError,
    PretrainingError,
    TrainingDivergedError,
)
from .arguments import PretrainingArguments
from .callbacks import MamoTeacherUpdateCallback
from .checkpoints import list_checkpoints
from .loop import PretrainingResult, pretrain
from .reporting import CSVTracker
from .sampling import EpochShuffleSampler
from .validation import validate_arguments

__all__ = [
    "BadDataError",
    "CSVTracker",
    "CheckpointError",
    "EpochShuffleSampler",
    "InvalidArgumentError",
    "MamoTeacherUpdateCallback",
    "OutputDirInUseError",
    "PretrainingArguments",
    "PretrainingError",
    "PretrainingResult",
    "TrainingDivergedError",
    "list_checkpoints",
    "pretrain",
    "validate_arguments",
]
