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
"""The errors that the commands and the pre-training loop raise for a problem their message explains, and
`first_line`, which cuts any error to one line for a report.

`mamo-hf` prints a `PretrainingError` (and each subclass) as one line, `mamo-hf <command>: error: <message>`, without
a traceback: the message names the flag, file or value at fault and what to do.
"""


def first_line(error: BaseException) -> str:
    """An error's message cut to its first line (or its type's name when it has none), for a one-line report."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class PretrainingError(Exception):
    """A run or command refused or stopped for a reason the message explains (`mamo-hf` prints it without a
    traceback)."""


class InvalidArgumentError(PretrainingError, ValueError):
    """An argument value that cannot work, found before any work."""


class OutputDirInUseError(PretrainingError, RuntimeError):
    """Another live run holds the output folder."""


class CheckpointError(PretrainingError, ValueError):
    """A checkpoint to resume from is incomplete or unreadable."""


class TrainingDivergedError(PretrainingError, RuntimeError):
    """Too many consecutive steps had a non-finite loss or gradient, or the weights became non-finite."""


class BadDataError(PretrainingError, ValueError):
    """The training data cannot be read: an annotation file or shard that is not what it should be, or (with
    `--strict`) a bad record."""


__all__ = [
    "BadDataError",
    "CheckpointError",
    "InvalidArgumentError",
    "OutputDirInUseError",
    "PretrainingError",
    "TrainingDivergedError",
    "first_line",
]
