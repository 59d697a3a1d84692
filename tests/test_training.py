"""The Accelerate pre-training pipeline: resume, atomic checkpoints, accumulation, data formats, skips, CLI."""

import csv
import json
import re
from pathlib import Path

import pytest
import torch
from accelerate.state import AcceleratorState, GradientState
from helpers import assert_same_weights, final_weights, logged, run_two_processes, tiny_run
from safetensors.torch import load_file

from mamo_hf import MamoForPreTraining
from mamo_hf.data import write_demo_dataset
from mamo_hf.data.demo import COLOURS, COLUMNS, ROWS, SHAPES
from mamo_hf.training import CheckpointError, checkpoints, list_checkpoints, pretrain
from mamo_hf_cli import main


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """Every run builds its own Accelerator; the process-wide Accelerate state must not leak between tests."""
    yield
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


# ----------------------------------------------------------------------------------------------------------------
# Resume and checkpoints
# ----------------------------------------------------------------------------------------------------------------


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


def test_two_processes_with_a_staged_schedule_match_one_process(tmp_path):
    """Before the start MIM's and MRM's heads get no gradient: DDP is told so, and the ranks stay in sync."""
    settings = {"model_config": {"masked_modeling_start_step": 2}}
    result = run_two_processes(tmp_path / "two", **settings)
    assert result.returncode == 0, result.stderr[-4000:]
    pretrain(tiny_run(tmp_path, "one", batch_size=8, max_steps=3, **settings))
    two, one = logged(tmp_path / "two"), logged(tmp_path / "one")
    for step in one:
        assert two[step] == pytest.approx(one[step], rel=1e-4), step
    assert sorted(logged(tmp_path / "two", "train/loss_mim")) == [3]
    rank_states = [load_file(tmp_path / "two" / f"rank{rank}.safetensors")["state"] for rank in (0, 1)]
    assert torch.equal(rank_states[0], rank_states[1])


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


# ----------------------------------------------------------------------------------------------------------------
# Gradient accumulation
# ----------------------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------------------
# Two processes
# ----------------------------------------------------------------------------------------------------------------


def test_two_processes_stay_in_sync_match_one_process_and_evaluate_together(tmp_path):
    settings = {"model_config": {"queue_size": 16}, "eval_pairs": 12, "eval_k": 4}
    result = run_two_processes(tmp_path / "two", **settings)
    assert result.returncode == 0, result.stderr[-4000:]
    rank_states = [load_file(tmp_path / "two" / f"rank{rank}.safetensors")["state"] for rank in (0, 1)]
    assert torch.equal(rank_states[0], rank_states[1]), "the ranks ended with different student/teacher/queue"

    pretrain(tiny_run(tmp_path, "one", batch_size=8, max_steps=3, **settings))
    two, one = logged(tmp_path / "two"), logged(tmp_path / "one")
    assert sorted(two) == sorted(one) == [1, 2, 3]
    for step in one:
        assert two[step] == pytest.approx(one[step], rel=1e-4), step
    assert_same_weights(final_weights(tmp_path / "two"), final_weights(tmp_path / "one"), atol=2e-5, rtol=1e-3)
    # The zero-shot evaluation ran on both ranks (sharded, then gathered): the same figures as one process.
    summaries = [json.loads((tmp_path / run / "pretraining_summary.json").read_text()) for run in ("two", "one")]
    for moment in ("retrieval_before", "retrieval_after"):
        assert summaries[0][moment] == summaries[1][moment], moment


# ----------------------------------------------------------------------------------------------------------------
# Data formats and bad records
# ----------------------------------------------------------------------------------------------------------------


def bad_caption_file(tmp_path) -> Path:
    """A caption JSON whose records include a corrupt image, a missing image and an empty caption."""
    annotation_file = write_demo_dataset(tmp_path / "bad", 24, seed=2, image_size=32, max_objects=1)
    records = json.loads(annotation_file.read_text())
    (tmp_path / "bad" / "images" / "corrupt.png").write_bytes(b"\x89PNG not really")
    records[3]["image"] = "images/corrupt.png"
    records[7]["image"] = "images/missing.png"
    records[11]["caption"] = "  ...  "
    annotation_file.write_text(json.dumps(records))
    return annotation_file


def test_bad_records_are_skipped_and_reported_exactly_once(tmp_path, capsys):
    summary = pretrain(tiny_run(tmp_path, train_file=[str(bad_caption_file(tmp_path))], max_steps=3)).summary
    assert summary["steps"] == 3
    assert sorted(summary["skipped_records"].values()) == sorted(
        ["empty caption", "missing image file", "unreadable image: not an image file of a format PIL knows"]
    )
    assert {Path(source).name for source in summary["skipped_records"]} >= {"corrupt.png", "missing.png"}
    assert "Skipped 3 bad record(s)" in capsys.readouterr().out


def test_strict_mode_fails_on_the_first_bad_record_naming_it(tmp_path, capsys):
    assert (
        main(
            [
                "pretrain",
                "--train-file",
                str(bad_caption_file(tmp_path)),
                "--strict",
                "--output-dir",
                str(tmp_path / "strict"),
                "--max-steps",
                "3",
                "--batch-size",
                "8",
                "--image-size",
                "32",
                "--num-workers",
                "0",
                "--report-to",
                "csv",
                "--eval-pairs",
                "0",
            ]
        )
        == 1
    )
    assert re.search(r"error: --strict: Bad record .*(corrupt.png|missing.png|empty caption)", capsys.readouterr().err)


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


# ----------------------------------------------------------------------------------------------------------------
# Outputs, CLI and the demo
# ----------------------------------------------------------------------------------------------------------------


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


def test_yaml_config_and_flags(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(
        "max_steps: 1\nbatch_size: 4\nimage_size: 32\nnum_workers: 0\neval_pairs: 0\n"
        "report_to: [csv]\ndemo_pairs: 64\nlog_every: 1\nmodel_config: {mim_weight: 0.0}\n"
    )
    main(
        [
            "pretrain",
            "--config",
            str(config),
            "--output-dir",
            str(tmp_path / "yaml"),
            "--max-steps",
            "2",
            "--model-config",
            "mrm_weight=0.5",
        ]
    )
    saved = json.loads((tmp_path / "yaml" / "config.json").read_text())
    assert (saved["mim_weight"], saved["mrm_weight"]) == (0.0, 0.5)
    assert set(logged(tmp_path / "yaml")) == {1, 2}  # the flag overrides the file's max_steps
    config.write_text("max_stepz: 3\n")
    with pytest.raises(SystemExit, match="max_stepz"):
        main(["pretrain", "--config", str(config)])


def test_demo_improves_zero_shot_retrieval(tmp_path, capsys):
    main(
        [
            "demo",
            "--output-dir",
            str(tmp_path / "demo"),
            "--max-steps",
            "250",
            "--demo-pairs",
            "4000",
            "--eval-pairs",
            "100",
            "--demo-max-objects",
            "1",
            "--image-size",
            "32",
            "--num-workers",
            "0",
            "--checkpoint-every",
            "0",
            "--report-to",
            "csv",
        ]
    )
    summary = json.loads((tmp_path / "demo" / "pretraining_summary.json").read_text())
    before, after = summary["retrieval_before"]["itc"], summary["retrieval_after"]["itc"]
    # 250 steps, single-object scenes, 100 held-out pairs (chance: R@1 1 %, R@5 5 %).
    assert after["txt_r5"] > before["txt_r5"] + 20 and after["img_r5"] > before["img_r5"] + 20
    assert after["txt_r1"] > before["txt_r1"] and after["img_r1"] > before["img_r1"]
    printed = capsys.readouterr().out
    assert "zero-shot R@1" in printed and "AutoModel.from_pretrained" in printed


def test_zero_shot_recalls_are_logged_beside_the_losses(tmp_path):
    pretrain(tiny_run(tmp_path, eval_pairs=12, eval_k=4, max_steps=2))
    with open(tmp_path / "run" / "logs" / "mamo" / "metrics.csv") as handle:
        logged = {(row["name"], int(row["step"])) for row in csv.DictReader(handle)}
    assert ("zero_shot/itc_txt_r1", 0) in logged and ("zero_shot/itm_img_r1", 2) in logged


def test_a_run_draws_its_training_curves(tmp_path):
    from PIL import Image

    pretrain(tiny_run(tmp_path, max_steps=4))
    picture = Image.open(tmp_path / "run" / "training_curves.png")
    assert picture.format == "PNG" and picture.width >= 3 * 360 and picture.height >= 2 * 200  # 8 train/* curves
    assert len(set(picture.convert("RGB").getdata())) > 3  # lines and text drawn, not a blank page
