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
"""The output folder of a run: one run per folder at a time (`OutputDirLock`), and a fresh run never mixes with
another run's results (`claim_output_dir`)."""

import json
import os
import shutil
import socket
import time
from pathlib import Path

from accelerate import Accelerator
from accelerate.utils import broadcast_object_list
from transformers.utils import logging

from ..errors import OutputDirInUseError
from .checkpoints import CHECKPOINT_PREFIX

logger = logging.get_logger(__name__)

LOCK_FILE = ".mamo_run.lock"
SUMMARY_FILE = "pretraining_summary.json"


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


def lock_output_dir(accelerator: Accelerator, output_dir: Path) -> OutputDirLock | None:
    """The main process takes the lock (and returns it); every rank raises the same error if it could not."""
    lock = OutputDirLock(output_dir) if accelerator.is_main_process else None
    _on_every_rank(accelerator, lock.acquire if lock else None)
    return lock


def claim_output_dir(accelerator: Accelerator, output_dir: Path, resume: bool, overwrite: bool) -> None:
    """With the folder locked, the main process checks that it holds no other run's results
    (`check_output_dir_is_free`) or, with `overwrite`, removes them; every rank raises the same error if it does."""

    def claim():
        check_output_dir_is_free(output_dir, resume, overwrite)
        if overwrite and not resume:
            clear_previous_run(output_dir)

    _on_every_rank(accelerator, claim if accelerator.is_main_process else None)


def _on_every_rank(accelerator: Accelerator, action) -> None:
    """Run `action` (on the main process: the others pass `None`), and raise its `OutputDirInUseError` on every
    rank."""
    message = [None]
    if action is not None:
        try:
            action()
        except OutputDirInUseError as error:
            message = [str(error)]
    if accelerator.num_processes > 1:
        broadcast_object_list(message)
    if message[0] is not None:
        raise OutputDirInUseError(message[0])


def check_output_dir_is_free(output_dir: Path, resume: bool = False, overwrite: bool = False) -> None:
    """A run folder belongs to one run: a fresh run (not `resume`) refuses a folder that holds another run's
    checkpoints, logs or final model, unless `overwrite` (which removes them, `clear_previous_run`)."""
    if resume or overwrite:
        return
    found = previous_run_files(Path(output_dir))
    if found:
        raise OutputDirInUseError(
            f"--output-dir {output_dir} holds another run's results ({', '.join(found[:3])}): continue it with "
            "--resume latest, replace it with --overwrite-output-dir, or choose another folder."
        )


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


__all__ = ["OutputDirLock", "check_output_dir_is_free", "claim_output_dir", "lock_output_dir", "previous_run_files"]
