"""What a run reports (`mamo_hf.training.reporting`): bad records counted once each and named by their record, zero-
shot recalls logged beside the losses, the training curves drawn."""

import csv
import json
from pathlib import Path

import pytest
from helpers import bad_caption_file, tiny_run
from PIL import Image

from mamo_hf.training import pretrain
from mamo_hf.training.reporting import training_panels

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


def test_bad_records_are_skipped_and_reported_exactly_once(tmp_path, capsys):
    summary = pretrain(tiny_run(tmp_path, train_file=[str(bad_caption_file(tmp_path))], max_steps=3)).summary
    assert summary["steps"] == 3
    assert sorted(summary["skipped_records"].values()) == sorted(
        ["empty caption", "missing image file", "unreadable image: not an image file of a format PIL knows"]
    )
    assert {Path(source).name for source in summary["skipped_records"]} >= {"corrupt.png", "missing.png"}
    assert "Skipped 3 bad record(s)" in capsys.readouterr().out


def test_zero_shot_recalls_are_logged_beside_the_losses(tmp_path):
    pretrain(tiny_run(tmp_path, eval_pairs=12, eval_k=4, max_steps=2))
    with open(tmp_path / "run" / "logs" / "mamo" / "metrics.csv") as handle:
        logged = {(row["name"], int(row["step"])) for row in csv.DictReader(handle)}
    assert ("zero_shot/itc_txt_r1", 0) in logged and ("zero_shot/itm_img_r1", 2) in logged


def test_a_run_draws_its_training_curves(tmp_path):
    from PIL import Image

    pretrain(tiny_run(tmp_path, max_steps=4, eval_pairs=8, eval_k=4))
    picture = Image.open(tmp_path / "run" / "training_curves.png")
    assert picture.format == "PNG" and picture.width >= 3 * 360 and picture.height >= 2 * 200
    assert len(set(picture.convert("RGB").getdata())) > 3  # lines and text drawn, not a blank page
    panels = training_panels(tmp_path / "run" / "logs" / "mamo" / "metrics.csv")
    # issue 30: titles that say what is drawn, no panel of a count that stayed 0, the retrieval curve
    assert "loss: image-text contrastive learning (ITC)" in panels and "learning rate" in panels
    assert not any("skipped" in title for title in panels)
    recall = panels["zero-shot retrieval R@1 (%), held-out pairs"]
    assert sorted(recall) == [
        "ITC, image retrieval",
        "ITC, text retrieval",
        "ITM, image retrieval",
        "ITM, text retrieval",
    ]
    assert [step for step, _ in recall["ITC, text retrieval"]] == [0, 4]


def test_bad_records_that_share_an_image_are_each_counted_and_named_by_their_record(tmp_path, capsys):
    """The skip report was keyed by the image path: three bad records of one image were "Skipped 1 bad record"."""
    Image.new("RGB", (32, 32), "red").save(tmp_path / "a.png")
    bad = [{"image": "a.png", "caption": caption} for caption in ("", "   ", "\U0001f600")]
    good = [{"image": "a.png", "caption": "a red square"} for _ in range(5)]
    (tmp_path / "c.json").write_text(json.dumps(bad + good))
    summary = pretrain(tiny_run(tmp_path, train_file=[str(tmp_path / "c.json")], max_steps=2)).summary
    assert sorted(summary["skipped_records"]) == [
        f"{tmp_path / 'c.json'}, record {index}, image {tmp_path / 'a.png'}" for index in range(3)
    ]
    assert set(summary["skipped_records"].values()) == {"empty caption"}
    assert "Skipped 3 bad record(s): 3 × empty caption" in capsys.readouterr().out
