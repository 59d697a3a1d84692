"""One run per output folder (`mamo_hf.training.run_dir`): a live run's lock refuses a second run and a stale lock is
taken over; a folder with another run's results is refused unless overwritten; a rerun after a kill before the first
checkpoint does not log steps twice."""

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from accelerate.state import AcceleratorState
from helpers import reset_accelerate, tiny_run

from mamo_hf.training import OutputDirInUseError, pretrain
from mamo_hf.training.run_dir import LOCK_FILE

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


def test_a_second_run_on_a_live_runs_folder_refuses_and_a_stale_lock_is_taken_over(tmp_path):
    run = tiny_run(tmp_path, max_steps=2)
    lock = Path(run.output_dir) / LOCK_FILE
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": "earlier"}))
    with pytest.raises(OutputDirInUseError, match=f"in use by another run \\(pid {os.getpid()}"):
        pretrain(run)
    assert not (Path(run.output_dir) / "logs").exists(), "the refused run wrote nothing"
    reset_accelerate()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock.write_text(json.dumps({"pid": int(gone.stdout), "host": socket.gethostname(), "started": "earlier"}))
    assert pretrain(run).summary["steps"] == 2
    assert not lock.exists(), "the lock is released at the end of the run"


def metrics_steps(run_dir) -> list[int]:
    with open(Path(run_dir) / "logs" / "mamo" / "metrics.csv") as handle:
        return [int(row["step"]) for row in csv.DictReader(handle) if row["name"] == "train/loss"]


def test_a_fresh_run_refuses_a_folder_with_another_runs_results_and_overwriting_replaces_them(tmp_path):
    first = tiny_run(tmp_path, checkpoint_every=3, max_steps=6)
    pretrain(first)
    before = (tmp_path / "run" / "model.safetensors").read_bytes()
    AcceleratorState._reset_state(reset_partial_state=True)
    with pytest.raises(OutputDirInUseError, match="--resume latest.*--overwrite-output-dir"):
        pretrain(tiny_run(tmp_path, checkpoint_every=2, max_steps=4, seed=9))
    assert (tmp_path / "run" / "model.safetensors").read_bytes() == before  # nothing of the first run touched
    assert sorted(path.name for path in (tmp_path / "run").glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-6"]
    AcceleratorState._reset_state(reset_partial_state=True)
    pretrain(tiny_run(tmp_path, checkpoint_every=2, max_steps=4, seed=9, overwrite_output_dir=True))
    assert sorted(path.name for path in (tmp_path / "run").glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert metrics_steps(tmp_path / "run") == [1, 2, 3, 4]  # one log, the new run's


def test_a_rerun_after_a_kill_before_the_first_checkpoint_does_not_log_steps_twice(tmp_path):
    (tmp_path / "run" / "logs" / "mamo").mkdir(parents=True)
    (tmp_path / "run" / "logs" / "mamo" / "metrics.csv").write_text("step,name,value\n1,train/loss,9.0\n")
    with pytest.raises(OutputDirInUseError, match="logs"):
        pretrain(tiny_run(tmp_path))
    AcceleratorState._reset_state(reset_partial_state=True)
    pretrain(tiny_run(tmp_path, overwrite_output_dir=True))
    assert metrics_steps(tmp_path / "run") == list(range(1, 7))
