"""Checkpoints of `pretrain` (`mamo_hf.training.checkpoints`): a resumed run continues exactly like the uninterrupted
one (from every checkpoint, with accumulation, across a staged schedule's start); an interrupted or full-disk save
keeps the last good checkpoint and the final save leaves no config without weights; checkpoints hold no pickle and
no non-finite weights; a resume with changed arguments, a `--max-steps` below the checkpoint or an unreadable state
is refused with one line naming the problem."""

import csv
import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from accelerate.state import AcceleratorState, GradientState
from helpers import (
    assert_same_weights,
    cli,
    final_weights,
    logged,
    one_line_error,
    reset_accelerate,
    resume_copy,
    run_main,
    tiny_run,
)

from mamo_hf.training import (
    CheckpointError,
    InvalidArgumentError,
    TrainingDivergedError,
    checkpoints,
    list_checkpoints,
    pretrain,
)

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


def test_resume_continues_exactly_like_the_uninterrupted_run(tmp_path, monkeypatch):
    uninterrupted = pretrain(tiny_run(tmp_path, "uninterrupted")).summary

    real_save = checkpoints.save_checkpoint

    def save_then_crash(accelerator, output_dir, state, *args):
        path = real_save(accelerator, output_dir, state, *args)
        if state["step"] == 3:
            raise KeyboardInterrupt("stopped after the checkpoint of step 3")
        return path

    monkeypatch.setattr(checkpoints, "save_checkpoint", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        pretrain(tiny_run(tmp_path, "interrupted", checkpoint_every=3))
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    monkeypatch.setattr(checkpoints, "save_checkpoint", real_save)
    resumed = pretrain(tiny_run(tmp_path, "interrupted", checkpoint_every=3, resume="latest")).summary

    assert uninterrupted["steps"] == resumed["steps"] == 6
    losses, resumed_losses = logged(tmp_path / "uninterrupted"), logged(tmp_path / "interrupted")
    assert sorted(resumed_losses) == list(range(1, 7))
    for step in range(1, 7):
        assert resumed_losses[step] == pytest.approx(losses[step], rel=1e-6, abs=1e-7), step
    assert_same_weights(
        final_weights(tmp_path / "interrupted"), final_weights(tmp_path / "uninterrupted"), atol=1e-6, rtol=1e-5
    )


def test_a_staged_schedule_resumes_exactly_across_its_start(tmp_path, monkeypatch):
    """MIM and MRM start at step 4 (after 3 teacher updates); a run stopped after the checkpoint of step 2, before the
    start, continues like the uninterrupted one, losses and weights, and starts them at the same step."""
    staged = {"model_config": {"masked_modeling_start_step": 3}, "checkpoint_every": 2}
    pretrain(tiny_run(tmp_path, "uninterrupted", **staged))
    real_save = checkpoints.save_checkpoint

    def save_then_crash(accelerator, output_dir, state, *args):
        path = real_save(accelerator, output_dir, state, *args)
        if state["step"] == 2:
            raise KeyboardInterrupt("stopped after the checkpoint of step 2")
        return path

    monkeypatch.setattr(checkpoints, "save_checkpoint", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        pretrain(tiny_run(tmp_path, "interrupted", **staged))
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    monkeypatch.setattr(checkpoints, "save_checkpoint", real_save)
    pretrain(tiny_run(tmp_path, "interrupted", resume="latest", **staged))

    for name in ("train/loss", "train/loss_mim"):
        expected, resumed = logged(tmp_path / "uninterrupted", name), logged(tmp_path / "interrupted", name)
        assert resumed == pytest.approx(expected, rel=1e-6, abs=1e-7), name
    assert sorted(logged(tmp_path / "uninterrupted", "train/loss_mrm")) == [4, 5, 6]
    assert_same_weights(
        final_weights(tmp_path / "interrupted"), final_weights(tmp_path / "uninterrupted"), atol=1e-6, rtol=1e-5
    )


def test_an_interrupted_save_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    from accelerate import Accelerator

    real_save_state = Accelerator.save_state

    def save_half_then_crash(self, output_dir=None, **kwargs):
        if output_dir.endswith("checkpoint-4.tmp"):
            Path(output_dir).mkdir(parents=True)
            (Path(output_dir) / "model.safetensors").write_bytes(b"half-written")
            raise OSError("disk full")
        return real_save_state(self, output_dir, **kwargs)

    monkeypatch.setattr(Accelerator, "save_state", save_half_then_crash)
    run = tiny_run(tmp_path, checkpoint_every=2)
    with pytest.raises(CheckpointError, match="disk full"):  # one line for the CLI; no partial folder
        pretrain(run)
    kept = list_checkpoints(run.output_dir)
    assert [path.name for path in kept] == ["checkpoint-2"]
    assert json.loads((kept[0] / checkpoints.TRAINING_STATE).read_text())["step"] == 2

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    monkeypatch.setattr(Accelerator, "save_state", real_save_state)
    summary = pretrain(tiny_run(tmp_path, checkpoint_every=2, resume="latest")).summary
    assert summary["steps"] == 6
    assert [path.name for path in list_checkpoints(run.output_dir)] == ["checkpoint-4", "checkpoint-6"]


def epochs_run(tmp_path, name, **overrides):
    """16 demo pairs, 4 optimizer steps per epoch, 12 steps (3 epochs), a checkpoint every 2 steps, all kept."""
    settings = {"demo_pairs": 16, "batch_size": 4, "max_steps": 12, "checkpoint_every": 2, "save_total_limit": 0}
    settings["model_config"] = {"queue_size": 8}
    return tiny_run(tmp_path, name, **(settings | overrides))


def logged_rows(run_dir) -> list[tuple[int, str]]:
    with open(Path(run_dir) / "logs" / "mamo" / "metrics.csv") as handle:
        return [(int(row["step"]), row["name"]) for row in csv.DictReader(handle)]


@pytest.mark.parametrize("accumulation", [1, 2])
def test_resuming_from_every_checkpoint_reproduces_every_later_loss_and_the_final_weights(tmp_path, accumulation):
    batch = {"batch_size": 4 // accumulation, "gradient_accumulation_steps": accumulation}
    pretrain(epochs_run(tmp_path, "uninterrupted", **batch))
    reset_accelerate()
    uninterrupted = tmp_path / "uninterrupted"
    expected, weights = logged(uninterrupted), final_weights(uninterrupted)
    assert sorted(expected) == list(range(1, 13))
    checkpoints = [path.name for path in list_checkpoints(uninterrupted)]
    assert checkpoints == [f"checkpoint-{step}" for step in range(2, 13, 2)]
    for checkpoint in checkpoints[:-1]:
        step = int(checkpoint.split("-")[1])
        folder = resume_copy(tmp_path, uninterrupted, checkpoint, f"from-{step}")
        pretrain(epochs_run(tmp_path, folder.name, resume="latest", **batch))
        reset_accelerate()
        resumed = logged(folder)
        for later in range(step + 1, 13):
            assert resumed[later] == pytest.approx(expected[later], rel=1e-6, abs=1e-7), (checkpoint, later)
        assert_same_weights(final_weights(folder), weights, atol=1e-6, rtol=1e-5)
        # The copied log held rows up to the last step of the interrupted run: none is repeated.
        rows = logged_rows(folder)
        assert len(rows) == len(set(rows)), checkpoint


def test_non_finite_weights_are_never_written(tmp_path, monkeypatch):
    from mamo_hf import MamoForPreTraining

    real_update = MamoForPreTraining.update_teacher

    def corrupt_teacher(self):
        """A NaN in the teacher, which no loss reads with MIM and MRM off: only the save can notice it."""
        real_update(self)
        next(self.teacher.parameters()).data.view(-1)[0] = float("nan")

    monkeypatch.setattr(MamoForPreTraining, "update_teacher", corrupt_teacher)
    run = tiny_run(tmp_path, checkpoint_every=2, model_config={"mim_weight": 0.0, "mrm_weight": 0.0})
    with pytest.raises(TrainingDivergedError, match="Refusing to write the checkpoint of step 2: teacher"):
        pretrain(run)
    assert list_checkpoints(run.output_dir) == []


class _Trap:
    """Unpickling this runs a shell command (what a crafted checkpoint would do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoints_hold_no_pickle_and_resuming_runs_none(tmp_path):
    run = tiny_run(tmp_path, checkpoint_every=3)
    pretrain(run)
    reset_accelerate()
    checkpoint = Path(run.output_dir) / "checkpoint-3"
    assert sorted(path.name for path in checkpoint.iterdir()) == sorted(checkpoints.CHECKPOINT_FILES)
    torch.load(checkpoint / "optimizer.bin", weights_only=True)  # plain tensors and numbers only
    state = json.loads((checkpoint / checkpoints.TRAINING_STATE).read_text())
    assert state["step"] == 3 and state["scheduler"]["last_epoch"] == 3 and state["nonfinite_steps"] == []
    marker = tmp_path / "executed"
    for name in ("random_states_0.pkl", "scheduler.bin"):  # files older versions (and Accelerate) wrote
        (checkpoint / name).write_bytes(pickle.dumps(_Trap(marker)))
    pretrain(tiny_run(tmp_path, checkpoint_every=3, max_steps=8, resume=str(checkpoint)))
    assert not marker.exists(), "resuming executed code from the checkpoint folder"
    reset_accelerate()
    (checkpoint / "custom_checkpoint_0.pkl").write_bytes(pickle.dumps(_Trap(marker)))
    with pytest.raises(CheckpointError, match="custom checkpoints"):
        pretrain(tiny_run(tmp_path, checkpoint_every=3, max_steps=8, resume=str(checkpoint)))
    assert not marker.exists(), "resuming executed code from the checkpoint folder"


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda folder: (folder / "optimizer.bin").unlink(), "optimizer.bin is missing"),
        (lambda folder: (folder / "model.safetensors").write_bytes(b"garbage"), "model.safetensors is unreadable"),
        (lambda folder: (folder / "optimizer.bin").write_bytes(b"garbage"), "optimizer.bin is unreadable"),
        (lambda folder: truncate(folder / "model.safetensors"), "model.safetensors is unreadable"),  # issue 29
        (lambda folder: truncate(folder / "optimizer.bin"), "optimizer.bin is unreadable"),
        (lambda folder: (folder / checkpoints.TRAINING_STATE).write_text("{"), "training_state.json is unreadable"),
    ],
)
def test_a_missing_or_corrupt_state_file_is_an_error_naming_it(tmp_path, damage, message):
    """A damaged file is named (issue 29's battery: a truncated or overwritten file was "the model or optimizer
    state")."""
    run = tiny_run(tmp_path, checkpoint_every=3)
    pretrain(run)
    reset_accelerate()
    checkpoint = list_checkpoints(run.output_dir)[-1]
    damage(checkpoint)
    with pytest.raises(CheckpointError, match=message):  # continued beyond its end: a finished run is not resumed
        pretrain(tiny_run(tmp_path, checkpoint_every=3, max_steps=9, resume=str(checkpoint)))


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"batch_size": 4}, "--batch-size was 8, now 4"),
        ({"seed": 4}, "--seed was 3, now 4"),
        ({"model_config": {"mim_weight": 0.0}}, "--model-config"),
        ({"demo_pairs": 128}, "--demo-pairs"),
        ({"learning_rate": 5e-4}, "--learning-rate was 0.001, now 0.0005"),
    ],
)
def test_resume_refuses_changed_arguments_naming_them(tmp_path, change, named):
    pretrain(tiny_run(tmp_path, checkpoint_every=3, max_steps=3))
    AcceleratorState._reset_state(reset_partial_state=True)
    with pytest.raises(CheckpointError, match="--allow-changed-arguments") as raised:
        pretrain(tiny_run(tmp_path, checkpoint_every=3, max_steps=6, resume="latest", **change))
    assert named in str(raised.value)


def test_resume_with_max_steps_below_the_checkpoint_is_refused_and_changes_nothing(tmp_path, capsys):
    arguments = ["pretrain", "--output-dir", str(tmp_path / "run"), "--batch-size", "4", "--image-size", "32",
                 "--eval-pairs", "0", "--report-to", "csv", "--demo-pairs", "16", "--num-workers", "0"]  # fmt: skip
    assert run_main(capsys, *arguments, "--max-steps", "2", "--checkpoint-every", "1")[0] == 0
    summary = (tmp_path / "run" / "pretraining_summary.json").read_text()
    code, stderr = run_main(capsys, *arguments, "--max-steps", "1", "--resume", "latest", "--allow-changed-arguments")
    assert code == 1
    one_line_error(None, stderr, "mamo-hf pretrain: error: --max-steps 1 is below the step of", "(2)")
    assert (tmp_path / "run" / "pretraining_summary.json").read_text() == summary


def test_a_training_state_of_the_wrong_shape_is_a_checkpoint_error(tmp_path, capsys):
    arguments = ["pretrain", "--output-dir", str(tmp_path / "run"), "--batch-size", "4", "--image-size", "32",
                 "--eval-pairs", "0", "--report-to", "csv", "--demo-pairs", "16", "--num-workers", "0"]  # fmt: skip
    assert run_main(capsys, *arguments, "--max-steps", "2", "--checkpoint-every", "1")[0] == 0
    (tmp_path / "run" / "checkpoint-2" / "training_state.json").write_text("[1, 2]")
    code, stderr = run_main(capsys, *arguments, "--max-steps", "3", "--resume", "latest")
    assert code == 1
    one_line_error(None, stderr, "training_state.json is unreadable (not an object with an integer 'step')")


def test_a_full_disk_during_a_checkpoint_keeps_the_last_one_and_leaves_nothing_partial(tmp_path, monkeypatch):
    from accelerate import Accelerator

    real_save_state = Accelerator.save_state

    def full_at_step_4(self, output_dir, *args, **kwargs):
        if "checkpoint-4" in str(output_dir):
            Path(output_dir).mkdir(parents=True, exist_ok=True)
            (Path(output_dir) / "model.safetensors").write_bytes(b"half")
            raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0")
        return real_save_state(self, output_dir, *args, **kwargs)

    monkeypatch.setattr(Accelerator, "save_state", full_at_step_4)
    with pytest.raises(CheckpointError, match="could not write the checkpoint-4.*--resume latest"):
        pretrain(tiny_run(tmp_path, checkpoint_every=2))
    folder = tmp_path / "run"
    assert sorted(path.name for path in folder.iterdir() if "checkpoint" in path.name) == ["checkpoint-2"]


def assert_the_final_save_fails_in_one_line(capsys, output_dir: Path) -> None:
    """A 2-step demo pre-training into `output_dir` whose final save finds the disk full: status 1 and one line."""
    code, stderr = run_main(
        capsys, "pretrain", "--output-dir", str(output_dir), "--image-size", "32", "--demo-pairs", "64",
        "--batch-size", "8", "--max-steps", "2", "--eval-pairs", "0", "--num-workers", "0", "--report-to", "csv",
    )  # fmt: skip
    assert code == 1
    one_line_error(None, stderr, "could not write the final model (No space left on device)")


def test_a_full_disk_during_the_final_save_leaves_no_config_without_weights(tmp_path, monkeypatch, capsys):
    from mamo_hf import MamoForPreTraining

    def config_then_full(self, folder, *args, **kwargs):
        (Path(folder)).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "config.json").write_text("{}")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(MamoForPreTraining, "save_pretrained", config_then_full)
    assert_the_final_save_fails_in_one_line(capsys, tmp_path / "run")
    assert not (tmp_path / "run" / "config.json").exists()
    assert not any(path.name.endswith(".tmp") for path in (tmp_path / "run").iterdir())


def test_a_damaged_optimizer_state_is_one_line_naming_the_checkpoint_to_resume_instead(tmp_path):
    common = (
        "pretrain", "--output-dir", str(tmp_path / "run"), "--image-size", "32", "--demo-pairs", "64",
        "--eval-pairs", "0", "--batch-size", "4", "--checkpoint-every", "1", "--num-workers", "0",
        "--report-to", "csv",
    )  # fmt: skip
    assert cli(*common, "--max-steps", "2").returncode == 0
    (tmp_path / "run" / "checkpoint-2" / "optimizer.bin").write_bytes(bytes(range(100)))
    result = cli(*common, "--max-steps", "3", "--resume", "latest")
    assert result.returncode == 1
    one_line_error(
        result, result.stderr, "checkpoint-2: optimizer.bin is unreadable (a damaged file)",
        f"resume from an earlier one with --resume {tmp_path / 'run' / 'checkpoint-1'}",
    )  # fmt: skip
    assert "weights_only" not in result.stderr


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


def test_a_full_disk_in_safetensors_during_the_final_save_is_one_line(tmp_path, monkeypatch, capsys):
    """Issue 29: safetensors reports a full disk as its own `SafetensorError`, which ended in a traceback."""
    from safetensors import SafetensorError

    from mamo_hf import MamoForPreTraining

    def full(self, folder, *args, **kwargs):
        message = (
            'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })'
        )
        raise SafetensorError(message)

    monkeypatch.setattr(MamoForPreTraining, "save_pretrained", full)
    assert_the_final_save_fails_in_one_line(capsys, tmp_path / "run")
