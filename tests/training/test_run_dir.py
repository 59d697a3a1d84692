"""One run per output folder (`mamo_hf.training.run_dir`): a live run's lock refuses a second run and a stale lock is
taken over; a folder with another run's results is refused unless overwritten; a rerun after a kill before the first
checkpoint does not log steps twice; a fresh run writes only into a new or empty folder or one a run recorded, and
`--overwrite-output-dir` removes only what was recorded, never a user's file."""

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
from mamo_hf.training.manifest import MANIFEST_FILE, RunManifest
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
    RunManifest(tmp_path / "run").record("logs/mamo")  # what the killed run had recorded of its folder
    with pytest.raises(OutputDirInUseError, match="logs"):
        pretrain(tiny_run(tmp_path))
    AcceleratorState._reset_state(reset_partial_state=True)
    pretrain(tiny_run(tmp_path, overwrite_output_dir=True))
    assert metrics_steps(tmp_path / "run") == list(range(1, 7))


def user_folder(folder: Path) -> dict[str, str]:
    """A folder of a user's own files, some with names a run writes (`README.md`, `config.json`, `logs/`)."""
    files = {"README.md": "# my notes\n", "config.json": '{"mine": true}\n', "data.txt": "1 2 3\n"}
    files["logs/notes.txt"] = "my log\n"
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return files


def unchanged(folder: Path, files: dict[str, str]) -> bool:
    return all((folder / name).is_file() and (folder / name).read_text() == text for name, text in files.items())


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_folder_of_the_users_own_files_is_refused_and_left_as_it_was(tmp_path, overwrite):
    folder = tmp_path / "run"
    files = user_folder(folder)
    with pytest.raises(OutputDirInUseError, match="no mamo-hf run wrote there .*README.md"):
        pretrain(tiny_run(tmp_path, overwrite_output_dir=overwrite))
    assert unchanged(folder, files)
    assert sorted(path.name for path in folder.iterdir()) == ["README.md", "config.json", "data.txt", "logs"]


def test_overwrite_removes_what_the_earlier_run_wrote_and_refuses_a_file_put_beside_it(tmp_path):
    folder = tmp_path / "run"
    pretrain(tiny_run(tmp_path, checkpoint_every=3))
    recorded = RunManifest(folder).written()
    assert {"checkpoint-3", "checkpoint-6", "logs/mamo", "model.safetensors", "README.md"} <= set(recorded)
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(OutputDirInUseError, match="notes.txt"):
        pretrain(tiny_run(tmp_path, overwrite_output_dir=True, checkpoint_every=0, max_steps=2))
    assert (folder / "notes.txt").read_text() == "mine" and (folder / "checkpoint-6").is_dir()

    (folder / "notes.txt").unlink()
    summary = pretrain(tiny_run(tmp_path, overwrite_output_dir=True, checkpoint_every=0, max_steps=2)).summary
    assert summary["steps"] == 2 and not list(folder.glob("checkpoint-*"))  # the earlier run's checkpoints are gone
    assert (folder / MANIFEST_FILE).is_file() and "checkpoint-3" not in RunManifest(folder).written()


def test_a_run_of_an_older_version_resumes_and_is_adopted(tmp_path):
    folder = tmp_path / "run"
    pretrain(tiny_run(tmp_path, checkpoint_every=3, max_steps=3))
    (folder / MANIFEST_FILE).unlink()  # as an older version left it
    pretrain(tiny_run(tmp_path, checkpoint_every=3, resume="latest"))
    assert {"checkpoint-3", "checkpoint-6"} <= set(RunManifest(folder).written())


@pytest.mark.parametrize("content", ["[1, 2]", "5", '"text"'])
def test_a_lock_holding_json_that_names_no_owner_is_one_line(tmp_path, content):
    """Issue 29: a lock file of valid JSON that is not an object ended in an AttributeError."""
    run = tiny_run(tmp_path, max_steps=2)
    lock = Path(run.output_dir) / LOCK_FILE
    lock.parent.mkdir(parents=True)
    lock.write_text(content)
    with pytest.raises(OutputDirInUseError, match="names no owner"):
        pretrain(run)
    reset_accelerate()
    os.utime(lock, (0, 0))  # an old lock without an owner is stale: taken over
    assert pretrain(run).summary["steps"] == 2


def test_a_lock_that_cannot_be_removed_at_the_end_is_left_for_the_next_run_to_take_over(tmp_path, monkeypatch):
    """Issue 29 (battery): a folder made read-only during the run cannot lose its lock; the run still ends with its
    own result (here, success), not with an `OSError` from removing the lock (a lock whose process is gone is taken
    over: `test_a_second_run_on_a_live_runs_folder_refuses_and_a_stale_lock_is_taken_over`)."""
    real_unlink = Path.unlink

    def read_only(self, missing_ok=False):
        if self.name == LOCK_FILE:
            raise OSError(30, "Read-only file system", str(self))
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", read_only)
    run = tiny_run(tmp_path, max_steps=2)
    assert pretrain(run).summary["steps"] == 2
    assert json.loads((Path(run.output_dir) / LOCK_FILE).read_text())["pid"] == os.getpid()  # gone with this run


def test_a_refusal_names_only_results_still_there_and_a_folder_emptied_by_hand_is_free(tmp_path):
    """Issue 29 (battery): the refusal listed what the run's record names, gone or not (`.final-model.tmp`, a
    staging folder renamed long ago), and a folder whose results were all deleted by hand (`rm -r run/*` leaves the
    hidden record) was still refused as holding another run's results."""
    import shutil

    run = tiny_run(tmp_path, max_steps=2)
    pretrain(run)
    reset_accelerate()
    with pytest.raises(OutputDirInUseError, match=r"results \(README.md, config.json, configuration_mamo.py\)"):
        pretrain(run)
    for path in Path(run.output_dir).iterdir():
        if not path.name.startswith("."):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    reset_accelerate()
    assert pretrain(run).summary["steps"] == 2
