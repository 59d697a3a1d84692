"""The pre-training loop (`mamo_hf.training.loop`, `pretrain`) end to end: every input format trains, accumulating two
half batches equals one full batch, a non-finite step is skipped and a run of them stops the run, the summary keeps
the last applied losses, a step that needs more pairs than the data has is refused instead of hanging, and the saved
model and processor load with the Auto classes."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate.state import AcceleratorState, GradientState
from helpers import assert_same_weights, cli, final_weights, logged, one_line_error, poison_batches, tiny_run
from safetensors.torch import load_file

from mamo_hf import MamoForPreTraining
from mamo_hf.data import write_demo_dataset
from mamo_hf.data.demo import COLOURS, COLUMNS, ROWS, SHAPES
from mamo_hf.training import TrainingDivergedError, checkpoints, list_checkpoints, pretrain
from mamo_hf.training.run_dir import LOCK_FILE

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


def equal_length_captions(tmp_path) -> str:
    """Demo images with five-word captions: every caption has the same number of tokens, so that every per-pair
    objective averages over the same number of masked items in any batching."""
    annotation_file = write_demo_dataset(tmp_path / "data", 64, seed=1, image_size=32, max_objects=1)
    records = json.loads(annotation_file.read_text())
    rng = torch.Generator().manual_seed(0)
    words = [list(COLOURS), list(SHAPES), ["small", "large"], list(ROWS), list(COLUMNS)]
    for record in records:
        record["caption"] = " ".join(group[int(torch.randint(len(group), (1,), generator=rng))] for group in words)
    annotation_file.write_text(json.dumps(records))
    return str(annotation_file)


def test_accumulating_two_half_batches_equals_one_full_batch(tmp_path, monkeypatch):
    updates = []
    real_update = MamoForPreTraining.update_teacher
    monkeypatch.setattr(MamoForPreTraining, "update_teacher", lambda self: updates.append(1) or real_update(self))
    # ITC and ITM contrast a pair with the others of its micro-batch, so they differ between one batch of 2B and two
    # of B by definition; the per-pair objectives (MLM, MIM, MRM) must not.
    data = {
        "train_file": [equal_length_captions(tmp_path)],
        "augment": False,
        "max_steps": 3,
        "model_config": {"itc_weight": 0.0, "itm_weight": 0.0},
    }
    pretrain(tiny_run(tmp_path, "full_batch", batch_size=8, **data))
    assert len(updates) == 3
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    pretrain(tiny_run(tmp_path, "accumulated", batch_size=4, gradient_accumulation_steps=2, **data))
    assert len(updates) == 6  # three more: one per optimizer step, not one per micro-batch

    full, accumulated = logged(tmp_path / "full_batch"), logged(tmp_path / "accumulated")
    assert sorted(full) == sorted(accumulated) == [1, 2, 3]
    assert_same_weights(
        final_weights(tmp_path / "accumulated"), final_weights(tmp_path / "full_batch"), atol=2e-6, rtol=1e-4
    )


@pytest.mark.parametrize("source", ["json", "jsonl", "csv", "hf_dataset", "streaming"])
def test_every_input_format_trains(tmp_path, source):
    annotation_file = write_demo_dataset(
        tmp_path / "data",
        32,
        seed=4,
        image_size=32,
        max_objects=1,
        file_format="jsonl" if source in ("jsonl", "streaming") else "json",
    )
    records = (
        [json.loads(line) for line in annotation_file.read_text().splitlines()]
        if annotation_file.suffix == ".jsonl"
        else json.loads(annotation_file.read_text())
    )
    if source == "csv":
        annotation_file = tmp_path / "data" / "captions.csv"
        with open(annotation_file, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["image", "caption"])
            writer.writeheader()
            writer.writerows(records)
    data = {"train_file": [str(annotation_file)], "streaming": source == "streaming"}
    if source == "hf_dataset":
        import datasets

        folder = tmp_path / "data"
        hf = datasets.Dataset.from_dict(
            {"image": [str(folder / r["image"]) for r in records], "caption": [r["caption"] for r in records]}
        )
        hf.cast_column("image", datasets.Image()).save_to_disk(str(tmp_path / "hf"))
        data = {"hf_dataset": str(tmp_path / "hf")}
    summary = pretrain(tiny_run(tmp_path, max_steps=2, **data)).summary
    assert summary["steps"] == 2 and summary["skipped_records"] == {}
    assert set(logged(tmp_path / "run")) == {1, 2}


def test_the_saved_model_and_processor_load_with_auto_classes(tmp_path):
    from transformers import AutoModel, AutoModelForPreTraining, AutoProcessor

    pretrain(tiny_run(tmp_path, max_steps=2, report_to=["csv", "tensorboard"]))
    run_dir = tmp_path / "run"
    assert type(AutoModel.from_pretrained(run_dir)).__name__ == "MamoModel"
    assert type(AutoModelForPreTraining.from_pretrained(run_dir)).__name__ == "MamoForPreTraining"
    assert type(AutoProcessor.from_pretrained(run_dir)).__name__ == "MamoProcessor"
    assert any((run_dir / "logs").rglob("events.out.tfevents.*"))  # TensorBoard
    assert {"train/loss", "train/loss_mim", "train/learning_rate"} <= {
        row["name"] for row in csv.DictReader(open(run_dir / "logs" / "mamo" / "metrics.csv"))
    }


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


@pytest.mark.parametrize(
    "batching", [["--batch-size", "64"], ["--batch-size", "4", "--gradient-accumulation-steps", "8"]]
)
def test_a_step_that_needs_more_pairs_than_the_data_has_is_refused_instead_of_hanging(tmp_path, batching):
    result = cli(
        "pretrain", "--output-dir", str(tmp_path / "run"), "--image-size", "32", "--demo-pairs", "16",
        "--eval-pairs", "0", "--max-steps", "3", "--num-workers", "0", "--report-to", "csv", *batching,
    )  # fmt: skip
    assert result.returncode == 1
    named = "--batch-size 4 × --gradient-accumulation-steps 8:" if len(batching) > 2 else "--batch-size 64:"
    one_line_error(result, result.stderr, f"mamo-hf pretrain: error: {named}", "16 pairs make no full")


def test_non_finite_last_steps_leave_the_summary_with_the_last_applied_losses(tmp_path, monkeypatch):
    poison_batches(monkeypatch, {5, 6})  # steps 5 and 6 of 6
    summary = pretrain(tiny_run(tmp_path)).summary
    assert summary["nonfinite_steps"] == [5, 6] and summary["final_losses_step"] == 4
    assert all(np.isfinite(value) for value in summary["final_losses"].values())
    card = (tmp_path / "run" / "README.md").read_text()
    assert "nan" not in card.lower()


def test_a_stop_requested_from_another_thread_ends_the_run_after_a_micro_batch(tmp_path):
    import threading
    import time

    from mamo_hf.training.loop import request_stop

    run = tiny_run(tmp_path, max_steps=10_000, checkpoint_every=1)

    def stop_after_two_checkpoints():
        while len(list_checkpoints(run.output_dir)) < 2:
            time.sleep(0.05)
        request_stop()

    threading.Thread(target=stop_after_two_checkpoints, daemon=True).start()
    with pytest.raises(KeyboardInterrupt, match="stop requested"):
        pretrain(run)
    steps = [int(path.name.rpartition("-")[2]) for path in list_checkpoints(run.output_dir)]
    assert 2 <= steps[-1] < 10_000


@pytest.mark.parametrize("damage", ["deleted", "read-only"])
def test_an_output_folder_deleted_or_made_read_only_during_the_run_is_one_line(tmp_path, monkeypatch, damage):
    """Issue 29 (battery): the output folder deleted (or made read-only) while the run trains ends the run with one
    `CheckpointError` that says what happened, not a `FileNotFoundError` traceback from the run's record."""
    import shutil

    from mamo_hf.training import CheckpointError
    from mamo_hf.training.manifest import RunManifest

    real_save, real_write = checkpoints.save_checkpoint, RunManifest._write

    def damaged_then_saved(accelerator, output_dir, state, *args, **kwargs):
        if state["step"] == 4:
            if damage == "deleted":
                shutil.rmtree(output_dir)
            else:
                monkeypatch.setattr(RunManifest, "_write", read_only)
        return real_save(accelerator, output_dir, state, *args, **kwargs)

    def read_only(self, written):
        raise OSError(30, "Read-only file system", str(self.path) + ".tmp")

    monkeypatch.setattr(checkpoints, "save_checkpoint", damaged_then_saved)
    refused = "could not write .mamo_run.json.tmp \\(Read-only"
    expected = "was deleted during the run" if damage == "deleted" else refused
    with pytest.raises(CheckpointError, match=expected) as raised:
        pretrain(tiny_run(tmp_path, checkpoint_every=2, max_steps=6))
    assert len(str(raised.value).splitlines()) == 1
    monkeypatch.setattr(RunManifest, "_write", real_write)
