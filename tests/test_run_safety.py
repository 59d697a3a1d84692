"""A pre-training run that can be trusted for days: exact resume from any checkpoint (across epochs, with
accumulation, on two processes), non-finite steps skipped and a diverging run stopped, checkpoints that execute
nothing, one run per output folder, arguments checked before any work."""

import csv
import json
import os
import pickle
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from accelerate.state import AcceleratorState, GradientState
from helpers import assert_same_weights, final_weights, logged, poison_batches, run_two_processes, tiny_run
from safetensors.torch import load_file

from mamo_hf import MamoForPreTraining
from mamo_hf.data import write_demo_dataset
from mamo_hf.training import (
    CheckpointError,
    InvalidArgumentError,
    OutputDirInUseError,
    TrainingDivergedError,
    checkpoints,
    devices,
    list_checkpoints,
    pretrain,
)
from mamo_hf.training.optimization import DivergenceGuard
from mamo_hf.training.run_dir import LOCK_FILE
from mamo_hf_cli import main


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    yield
    reset_accelerate()


def reset_accelerate():
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def epochs_run(tmp_path, name, **overrides):
    """16 demo pairs, 4 optimizer steps per epoch, 12 steps (3 epochs), a checkpoint every 2 steps, all kept."""
    settings = {"demo_pairs": 16, "batch_size": 4, "max_steps": 12, "checkpoint_every": 2, "save_total_limit": 0}
    settings["model_config"] = {"queue_size": 8}
    return tiny_run(tmp_path, name, **(settings | overrides))


def logged_rows(run_dir) -> list[tuple[int, str]]:
    with open(Path(run_dir) / "logs" / "mamo" / "metrics.csv") as handle:
        return [(int(row["step"]), row["name"]) for row in csv.DictReader(handle)]


def resume_copy(tmp_path, source: Path, checkpoint: str, name: str) -> Path:
    """A fresh run folder holding one checkpoint of `source` and its logs up to then (as if the run had been
    killed right after writing it)."""
    target = tmp_path / name
    shutil.copytree(source / checkpoint, target / checkpoint)
    shutil.copytree(source / "logs", target / "logs")
    return target


# ----------------------------------------------------------------------------------------------------------------
# Exact resume
# ----------------------------------------------------------------------------------------------------------------


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


def test_two_processes_resume_exactly_from_every_checkpoint_across_an_epoch_boundary(tmp_path):
    settings = {
        "demo_pairs": 32,
        "batch_size": 4,
        "max_steps": 8,
        "checkpoint_every": 3,
        "save_total_limit": 0,
        "model_config": {"queue_size": 8},
    }
    result = run_two_processes(tmp_path / "uninterrupted", **settings)
    assert result.returncode == 0, result.stderr[-4000:]
    expected = logged(tmp_path / "uninterrupted")
    for step in (3, 6):  # epoch 1 ends at step 4 (32 pairs, 2 processes × 4 per step)
        folder = resume_copy(tmp_path, tmp_path / "uninterrupted", f"checkpoint-{step}", f"from-{step}")
        (folder / "logs" / "mamo" / "metrics.csv").unlink()
        result = run_two_processes(folder, resume="latest", **settings)
        assert result.returncode == 0, result.stderr[-4000:]
        resumed = logged(folder)
        assert sorted(resumed) == list(range(step + 1, 9))
        for later in resumed:
            assert resumed[later] == pytest.approx(expected[later], rel=1e-6, abs=1e-7), (step, later)
        assert_same_weights(final_weights(folder), final_weights(tmp_path / "uninterrupted"), atol=1e-6, rtol=1e-5)


# ----------------------------------------------------------------------------------------------------------------
# Non-finite steps
# ----------------------------------------------------------------------------------------------------------------


def test_a_nan_batch_is_skipped_leaving_weights_optimizer_schedule_teacher_and_queue_untouched(tmp_path, monkeypatch):
    poison_batches(monkeypatch, {3})
    run = tiny_run(tmp_path, checkpoint_every=1, save_total_limit=0, model_config={"queue_size": 16})
    summary = pretrain(run).summary
    assert summary["nonfinite_steps"] == [3] and summary["steps"] == 6
    before, after = Path(run.output_dir) / "checkpoint-2", Path(run.output_dir) / "checkpoint-3"
    weights_before, weights_after = load_file(before / "model.safetensors"), load_file(after / "model.safetensors")
    assert weights_before.keys() == weights_after.keys()
    for name in weights_before:  # student, teacher, queue and pointer
        assert torch.equal(weights_before[name], weights_after[name]), name
    optimizer_before = torch.load(before / "optimizer.bin", weights_only=True)
    optimizer_after = torch.load(after / "optimizer.bin", weights_only=True)
    for index, state in optimizer_before["state"].items():
        assert torch.equal(state["exp_avg"], optimizer_after["state"][index]["exp_avg"])
    schedule = [json.loads((path / checkpoints.TRAINING_STATE).read_text())["scheduler"] for path in (before, after)]
    assert schedule[0]["last_epoch"] == schedule[1]["last_epoch"] == 2
    # the next batch trains again, and the run ends with finite weights
    weights_next = load_file(Path(run.output_dir) / "checkpoint-4" / "model.safetensors")
    assert not torch.equal(weights_next["mamo.text_projection.weight"], weights_after["mamo.text_projection.weight"])
    assert all(torch.isfinite(tensor).all() for tensor in final_weights(run.output_dir).values())
    assert logged(run.output_dir, "train/nonfinite_steps")[6] == 1


def test_consecutive_nan_steps_stop_the_run_with_an_error_and_no_non_finite_checkpoint(tmp_path, monkeypatch):
    poison_batches(monkeypatch, set(range(3, 100)))
    run = tiny_run(tmp_path, checkpoint_every=1, max_steps=20, max_nonfinite_steps=4)
    with pytest.raises(TrainingDivergedError, match="4 steps in a row up to step 6 had a non-finite loss"):
        pretrain(run)
    assert not (Path(run.output_dir) / "model.safetensors").exists(), "no final model after a diverged run"
    for checkpoint in list_checkpoints(run.output_dir):
        assert all(torch.isfinite(tensor).all() for tensor in load_file(checkpoint / "model.safetensors").values())
    assert not (Path(run.output_dir) / LOCK_FILE).exists(), "the lock is released when the run stops"


def test_a_diverging_learning_rate_makes_the_cli_exit_non_zero_with_a_message(tmp_path, capsys):
    flags = ["--image-size", "32", "--demo-pairs", "64", "--demo-max-objects", "1", "--eval-pairs", "0"]
    flags += ["--batch-size", "8", "--max-steps", "12", "--learning-rate", "50", "--warmup-steps", "0"]
    flags += ["--num-workers", "0", "--report-to", "csv", "--output-dir", str(tmp_path / "run")]
    assert main(["pretrain", *flags]) == 1
    error = capsys.readouterr().err
    assert "Training diverged" in error and "non-finite" in error and "Traceback" not in error


def test_the_guard_warns_of_loss_spikes_and_skips_only_non_finite_steps():
    guard = DivergenceGuard(max_consecutive=2, spike_factor=10.0)
    assert guard.check(1, {"loss": 4.0}, 1.0) and guard.check(2, {"loss": 3.0}, 1.0)
    assert guard.check(3, {"loss": 50.0}, 1.0) and guard.spikes == [3]  # applied, but reported
    assert guard.check(4, {"loss": 3.0}, 1.0) and guard.spikes == [3]
    assert not guard.check(5, {"loss": 3.0, "loss_itm": float("nan")}, 1.0)
    assert guard.check(6, {"loss": 3.0}, 1.0)  # a good step resets the count
    assert not guard.check(7, {"loss": 3.0}, float("inf"))
    with pytest.raises(TrainingDivergedError, match="2 steps in a row up to step 8 had a non-finite loss, grad_norm"):
        guard.check(8, {"loss": float("inf")}, float("nan"))


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


# ----------------------------------------------------------------------------------------------------------------
# Checkpoints execute nothing
# ----------------------------------------------------------------------------------------------------------------


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


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda folder: (folder / "optimizer.bin").unlink(), "optimizer.bin is missing"),
        (lambda folder: (folder / "model.safetensors").write_bytes(b"garbage"), "model or optimizer state"),
        (lambda folder: (folder / "optimizer.bin").write_bytes(b"garbage"), "model or optimizer state"),
        (lambda folder: (folder / checkpoints.TRAINING_STATE).write_text("{"), "training_state.json is unreadable"),
    ],
)
def test_a_missing_or_corrupt_state_file_is_an_error_naming_it(tmp_path, damage, message):
    run = tiny_run(tmp_path, checkpoint_every=3)
    pretrain(run)
    reset_accelerate()
    checkpoint = list_checkpoints(run.output_dir)[-1]
    damage(checkpoint)
    with pytest.raises(CheckpointError, match=message):
        pretrain(tiny_run(tmp_path, checkpoint_every=3, resume=str(checkpoint)))


# ----------------------------------------------------------------------------------------------------------------
# One run per output folder
# ----------------------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------------------
# Arguments
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"batch_size": 0}, "--batch-size must be an integer from 1 to 65536, got 0"),
        ({"gradient_accumulation_steps": -1}, "--gradient-accumulation-steps must be an integer from 1 to 65536"),
        ({"max_steps": 0}, "--max-steps must be an integer from 1 to 1000000000"),
        ({"learning_rate": float("nan")}, "--learning-rate must be a finite number > 0, got nan"),
        ({"learning_rate": -1e-4}, "--learning-rate must be a finite number > 0"),
        ({"min_learning_rate": 1.0}, "--min-learning-rate \\(1.0\\) must not exceed --learning-rate"),
        ({"warmup_steps": -5}, "--warmup-steps must be an integer from 0 to 1000000000"),
        (
            {"model_config": {"mim_wieght": 0.0}},
            "--model-config has unknown MamoConfig field\\(s\\) \\['mim_wieght'\\]",
        ),
        ({"train_file": ["nowhere.json"]}, "--train-file nowhere.json: no such file"),
        ({"mixed_precision": "fp8"}, "--mixed-precision must be no, bf16 or fp16"),
    ],
)
def test_bad_arguments_are_refused_before_any_work(tmp_path, monkeypatch, overrides, message):
    monkeypatch.setattr(MamoForPreTraining, "__init__", lambda self, config: pytest.fail("work started"))
    with pytest.raises(InvalidArgumentError, match=message):
        pretrain(tiny_run(tmp_path, **overrides))


def test_an_output_dir_that_is_a_file_or_unwritable_is_refused(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(InvalidArgumentError, match="--output-dir .* is a file, not a folder"):
        pretrain(tiny_run(tmp_path, "file"))
    with pytest.raises(InvalidArgumentError, match="--output-dir .*: cannot create it"):
        pretrain(tiny_run(tmp_path, "file/run"))


def test_the_cli_reports_a_bad_argument_in_one_line(tmp_path, capsys):
    assert main(["pretrain", "--batch-size", "0", "--output-dir", str(tmp_path / "run")]) == 1
    error = capsys.readouterr().err.strip()
    assert error == "mamo-hf pretrain: error: --batch-size must be an integer from 1 to 65536, got 0."


def test_special_token_ids_outside_the_vocabulary_are_refused(tmp_path):
    from mamo_hf import MamoConfig, MamoForPreTraining, MamoModel

    ids = {"pad_token_id": 0, "cls_token_id": 2, "sep_token_id": 3, "mask_token_id": 40}
    with pytest.raises(ValueError, match="`text_config.mask_token_id` \\(40\\) must be a token id of the vocabulary"):
        MamoForPreTraining(MamoConfig.tiny(vocab_size=30, special_token_ids=ids))
    MamoModel(MamoConfig.tiny(vocab_size=30, special_token_ids=ids)).save_pretrained(tmp_path / "bad-ids")
    with pytest.raises(InvalidArgumentError, match="--init .*bad-ids: `text_config.mask_token_id` \\(40\\)"):
        pretrain(tiny_run(tmp_path, init=str(tmp_path / "bad-ids")))


# ----------------------------------------------------------------------------------------------------------------
# Data edges
# ----------------------------------------------------------------------------------------------------------------


def test_records_with_a_missing_key_or_outside_the_root_are_skipped_and_counted_or_named_with_strict(tmp_path):
    annotation_file = write_demo_dataset(tmp_path / "data", 24, seed=2, image_size=32, max_objects=1)
    records = json.loads(annotation_file.read_text())
    del records[5]["caption"]
    records[9]["image"] = "../../outside.png"
    annotation_file.write_text(json.dumps(records))
    summary = pretrain(tiny_run(tmp_path, train_file=[str(annotation_file)], max_steps=2)).summary
    reasons = {source.rsplit(", ", 1)[-1]: reason for source, reason in summary["skipped_records"].items()}
    assert set(reasons) == {"record 5", "record 9"}
    assert "needs an 'image' path and a 'caption'" in reasons["record 5"] and "leads out of" in reasons["record 9"]
    reset_accelerate()
    with pytest.raises(ValueError, match="captions.json, record 5: a record needs"):
        pretrain(tiny_run(tmp_path, "strict", train_file=[str(annotation_file)], max_steps=2, strict=True))


# ----------------------------------------------------------------------------------------------------------------
# bf16 without hardware support
# ----------------------------------------------------------------------------------------------------------------


def test_bf16_without_native_support_is_refused_unless_allowed_with_a_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(devices, "has_native_bf16", lambda device: False)
    with pytest.raises(InvalidArgumentError, match="no native bf16 .* ~25× slower than fp32"):
        pretrain(tiny_run(tmp_path, mixed_precision="bf16", cpu=True))
    reset_accelerate()
    with caplog.at_level("WARNING"):
        summary = pretrain(tiny_run(tmp_path, mixed_precision="bf16", cpu=True, max_steps=1, allow_slow_bf16=True))
    assert summary.summary["steps"] == 1 and "running anyway" in caplog.text
    reset_accelerate()
    monkeypatch.setattr(devices, "has_native_bf16", lambda device: True)
    caplog.clear()
    pretrain(tiny_run(tmp_path, "native", mixed_precision="bf16", cpu=True, max_steps=1))
    assert "no native bf16" not in caplog.text


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path, monkeypatch):
    cpuinfo = {"with": "flags\t\t: fpu sse avx2 avx512f avx512_bf16\n", "without": "flags\t\t: fpu sse avx2\n"}
    for kind, text in cpuinfo.items():
        (tmp_path / kind).write_text("processor\t: 0\n" + text)
        monkeypatch.setattr(devices, "CPUINFO", tmp_path / kind)
        assert devices.has_native_bf16(torch.device("cpu")) is (kind == "with")
    monkeypatch.setattr(devices, "CPUINFO", tmp_path / "absent")
    assert devices.has_native_bf16(torch.device("cpu")) is None  # unknown: neither refused nor warned
