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
"""The record of what a run wrote into its output folder: `.mamo_run.json`, written before anything else.

A folder holding the record is one the tool created (or adopted on `--resume`); every file or folder a run writes
there is added to it as it is written (checkpoints, logs, the model and processor files, the summary, the curves,
the card). `--overwrite-output-dir` removes exactly what the record lists, and nothing a user put there.
"""

import json
import os
import shutil
from pathlib import Path

MANIFEST_FILE = ".mamo_run.json"
LOGS = "logs/mamo"  # what the trackers write (TensorBoard and `CSVTracker`), under `<output_dir>/logs`
SUMMARY_FILE = "pretraining_summary.json"  # what a finished run writes last: a run with one is not resumed


class RunManifest:
    """The record `<output_dir>/.mamo_run.json`: `{"written": [relative paths]}`, rewritten atomically."""

    def __init__(self, output_dir: str | os.PathLike):
        self.folder = Path(output_dir)
        self.path = self.folder / MANIFEST_FILE

    def exists(self) -> bool:
        return self.path.is_file()

    def written(self) -> list[str]:
        """The recorded paths, relative to the folder ([] without a record, or with one that cannot be read)."""
        try:
            recorded = json.loads(self.path.read_text()).get("written", [])
        except (OSError, ValueError, AttributeError):
            return []
        return [name for name in recorded if isinstance(name, str) and _inside(name)]

    def record(self, *names: str) -> None:
        """Add `names` (paths relative to the folder) to the record, creating it when missing."""
        self._write(sorted({*self.written(), *names}))

    def _write(self, written: list[str]) -> None:
        staging = self.path.with_name(MANIFEST_FILE + ".tmp")
        staging.write_text(json.dumps({"written": written}, indent=1) + "\n")
        os.replace(staging, self.path)

    def clear(self) -> list[str]:
        """Remove every recorded path that still exists (and a `logs` folder left empty), empty the record; returns
        what was removed."""
        removed = []
        for name in self.written():
            path = self.folder / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
            else:
                continue
            removed.append(name)
        logs = self.folder / "logs"
        if logs.is_dir() and not any(logs.iterdir()):
            logs.rmdir()
        self._write([])
        return removed


def _inside(name: str) -> bool:
    """Whether a recorded path stays inside the folder (a damaged or edited record never reaches out of it)."""
    parts = Path(name).parts
    return bool(parts) and not Path(name).is_absolute() and ".." not in parts and name != MANIFEST_FILE


__all__ = ["LOGS", "MANIFEST_FILE", "SUMMARY_FILE", "RunManifest"]
