"""A run folder the tool owns (issue 29): a fresh run writes only into a new or empty folder or one it wrote before,
`--overwrite-output-dir` removes only what a run recorded writing, a finished run is not run again, and a changed
training state is refused before it is used."""

import json
from pathlib import Path

import pytest
from helpers import tiny_run

from mamo_hf.training import CheckpointError, InvalidArgumentError, OutputDirInUseError, pretrain
from mamo_hf.training.manifest import MANIFEST_FILE, RunManifest

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


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


def test_resuming_a_finished_run_says_so_and_keeps_its_summary(tmp_path):
    run = tiny_run(tmp_path, checkpoint_every=3)
    pretrain(run)
    summary_file = Path(run.output_dir) / "pretraining_summary.json"
    before = summary_file.read_text()
    with pytest.raises(InvalidArgumentError, match="already finished at step 6 .* larger --max-steps"):
        pretrain(tiny_run(tmp_path, checkpoint_every=3, resume="latest"))
    assert summary_file.read_text() == before


def test_a_run_killed_after_its_last_checkpoint_finishes_with_the_checkpoints_losses_and_time(tmp_path):
    run = tiny_run(tmp_path, checkpoint_every=3)
    first = pretrain(run).summary
    (Path(run.output_dir) / "pretraining_summary.json").unlink()  # killed before the final save
    again = pretrain(tiny_run(tmp_path, checkpoint_every=3, resume="latest")).summary
    assert again["final_losses_step"] == 6 and again["final_losses"] == pytest.approx(first["final_losses"])
    assert again["seconds"] >= first["seconds"] * 0.5 > 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"step": -5}, "not integers >= 0"),
        ({"step": 2}, "says step 2, not the step of its folder checkpoint-3"),
        ({"batches_in_epoch": 10**6}, "do not fit together"),
        ({"micro_step": "3"}, "not integers >= 0"),
        ({"nonfinite_steps": [9]}, "'nonfinite_steps' that are not steps from 1 to 3"),
        ({"skipped": ["a"]}, "'skipped' record"),
    ],
)
def test_a_changed_training_state_is_refused_before_it_is_used(tmp_path, change, message):
    pretrain(tiny_run(tmp_path, checkpoint_every=3, max_steps=3))
    state_file = tmp_path / "run" / "checkpoint-3" / "training_state.json"
    state_file.write_text(json.dumps({**json.loads(state_file.read_text()), **change}))
    with pytest.raises(CheckpointError, match=message):
        pretrain(tiny_run(tmp_path, checkpoint_every=3, max_steps=6, resume="latest"))
    assert not (tmp_path / "run" / "checkpoint-6").exists()


def test_a_data_position_beyond_an_epoch_is_refused(tmp_path):
    pretrain(tiny_run(tmp_path, checkpoint_every=3, max_steps=3))
    state_file = tmp_path / "run" / "checkpoint-3" / "training_state.json"
    state = json.loads(state_file.read_text())
    state_file.write_text(json.dumps({**state, "micro_step": 10**6, "batches_in_epoch": 10**6}))
    with pytest.raises(CheckpointError, match="batches into an epoch of 32"):
        pretrain(tiny_run(tmp_path, checkpoint_every=3, max_steps=6, resume="latest"))


def test_every_count_flag_has_an_upper_bound(tmp_path):
    with pytest.raises(InvalidArgumentError, match="--caption-negatives must be an integer from 0 to 16, got 1000000"):
        pretrain(tiny_run(tmp_path, caption_negatives=1_000_000))
