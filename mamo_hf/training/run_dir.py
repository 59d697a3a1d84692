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
"""The output folder of a run: one run per folder at a time (`OutputDirLock`), a fresh run never mixes with another
run's results, and no run changes or deletes a file it did not write (`claim_output_dir`, `RunManifest`)."""

import json
import os
import socket
import time
from pathlib import Path

from accelerate import Accelerator
from accelerate.utils import broadcast_object_list
from transformers.utils import logging

from ..errors import OutputDirInUseError
from .checkpoints import CHECKPOINT_PREFIX
from .manifest import LOGS, MANIFEST_FILE, RunManifest

logger = logging.get_logger(__name__)

LOCK_FILE = ".mamo_run.lock"
# The files of the folder that are the run's bookkeeping, never a user's: the record, its staging file, the lock.
OWN_FILES = frozenset({MANIFEST_FILE, MANIFEST_FILE + ".tmp", LOCK_FILE})


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
                if not holder and not self._is_stale(holder):
                    raise OutputDirInUseError(
                        f"--output-dir {self.path.parent}: its lock {self.path} names no owner (another run may be "
                        "writing it this moment). Try again, or delete the lock if no run uses the folder."
                    ) from None
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
        """Remove the lock if this process holds it; a lock that cannot be removed (a folder made read-only) is left,
        with a warning: its owner is gone, so the next run takes it over."""
        if self._holder() == self.owner:
            try:
                self.path.unlink(missing_ok=True)
            except OSError as error:
                logger.warning(f"Cannot remove the lock {self.path} ({error.strerror}): the next run takes it over.")

    def _holder(self) -> dict:
        """The lock's owner, or {} for a lock that cannot be read or holds no owner (valid JSON of another shape)."""
        try:
            holder = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return holder if isinstance(holder, dict) else {}

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
    """With the folder locked, the main process makes it this run's: a fresh run takes a new or empty folder, or one
    that a run recorded as its own (`RunManifest`) and that holds nothing else; with `overwrite` it first removes
    what the earlier run recorded (`check_output_dir_is_free`). A resumed run adopts its folder. Every rank raises
    the same error if the folder cannot be claimed."""

    def claim():
        manifest = RunManifest(output_dir)
        if resume:
            adopt(manifest)
            return
        check_output_dir_is_free(output_dir, overwrite)
        if overwrite:
            manifest.clear()
        manifest.record()

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


def check_output_dir_is_free(output_dir: Path, overwrite: bool = False) -> None:
    """A fresh run writes only into a folder of its own: refuse one that holds files no run recorded writing (a
    user's files are never changed or deleted, with or without `overwrite`), and, unless `overwrite`, one that holds
    another run's results."""
    manifest = RunManifest(output_dir)
    recorded = {Path(name).parts[0] for name in manifest.written()}
    foreign = [path.name for path in sorted(Path(output_dir).iterdir()) if path.name not in recorded | OWN_FILES]
    if foreign:
        raise OutputDirInUseError(
            f"--output-dir {output_dir} holds files that no mamo-hf run wrote there ({', '.join(foreign[:3])}"
            f"{', ...' if len(foreign) > 3 else ''}): a run writes only into a new or empty folder, or one of its "
            "own, and never changes your files; choose another folder."
        )
    results = sorted(name for name in recorded if (Path(output_dir) / name).exists())  # not those deleted since
    if results and not overwrite:
        raise OutputDirInUseError(
            f"--output-dir {output_dir} holds another run's results ({', '.join(results[:3])}): continue it "
            "with --resume latest, replace it with --overwrite-output-dir, or choose another folder."
        )


def adopt(manifest: RunManifest) -> None:
    """A resumed run's folder: record, if it was never recorded (a run of an older version), the checkpoints and
    logs that a run left there."""
    if manifest.exists():
        return
    folder = manifest.folder
    names = [path.name for path in folder.glob(f"{CHECKPOINT_PREFIX}*") if path.is_dir()]
    manifest.record(*names, *([LOGS] if (folder / LOGS).is_dir() else []))


__all__ = ["OutputDirLock", "check_output_dir_is_free", "claim_output_dir", "lock_output_dir"]
