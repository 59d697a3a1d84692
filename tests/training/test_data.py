"""The data of a run (`mamo_hf.training.data`): bad records skipped and counted or, with `--strict`, one line naming
the first; files that cannot be read, data without a usable record, `--hf-dataset` folders, captions the demo
tokenizer does not know, caption negatives and minimal pairs: each problem one line naming the flag, before any
work."""

import json
import re
from pathlib import Path

import pytest
import torch
from helpers import TINY_RUN, bad_caption_file, cli, one_line_error, reset_accelerate, run_main, tiny_run
from PIL import Image

from mamo_hf.data import CaptionDataset, write_demo_dataset
from mamo_hf.training import PretrainingArguments, pretrain, validate_arguments
from mamo_hf_cli import main

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


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


def test_own_captions_with_the_demo_vocabulary_are_refused_naming_the_tokenizer_flag(tmp_path, capsys):
    Image.new("RGB", (32, 32)).save(tmp_path / "a.jpg")
    captions = [
        "A man riding a wave on top of a surfboard.",
        "Two giraffes standing next to each other in a zoo enclosure.",
        "A kitchen with wooden cabinets and a stainless steel refrigerator.",
    ]
    records = [{"image": "a.jpg", "caption": captions[index % 3]} for index in range(24)]
    (tmp_path / "coco.json").write_text(json.dumps(records))
    code, stderr = run_main(
        capsys, "pretrain", "--output-dir", str(tmp_path / "run"), "--train-file", str(tmp_path / "coco.json"),
        "--image-size", "32", "--batch-size", "8", "--max-steps", "1", "--eval-pairs", "0", "--num-workers", "0",
    )  # fmt: skip
    assert code == 1
    one_line_error(None, stderr, "--train-file:", "unknown to the built-in demo tokenizer", "pass --tokenizer")


def write_bad_annotation(folder: Path, kind: str) -> Path:
    records = json.dumps([{"image": "a.png", "caption": "a red circle"}])
    files = {
        "not a list": ("c.json", json.dumps({"image": "a.png"}).encode()),
        "empty": ("c.json", b""),
        "UTF-16": ("c.json", records.encode("utf-16")),
        "unknown suffix": ("c.txt", b"a.png,a red circle"),
        "broken Parquet": ("c.parquet", b"PAR1garbagePAR1"),
    }
    name, data = files[kind]
    (folder / name).write_bytes(data)
    return folder / name


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("not a list", "expected a JSON list"),
        ("empty", "not valid JSON"),
        ("UTF-16", "not UTF-8 text"),
        ("unknown suffix", "unknown format '.txt'"),
        ("broken Parquet", "not a readable Parquet file"),
    ],
)
def test_unreadable_annotation_files_and_shards_are_one_line_naming_the_file(tmp_path, capsys, kind, expected):
    Image.new("RGB", (16, 16)).save(tmp_path / "a.png")
    path = write_bad_annotation(tmp_path, kind)
    code, stderr = run_main(
        capsys, "pretrain", "--output-dir", str(tmp_path / "run"), "--train-file", str(path), "--max-steps", "2",
        "--image-size", "32", "--eval-pairs", "0", "--num-workers", "0", "--report-to", "csv",
    )  # fmt: skip
    assert code == 1
    one_line_error(None, stderr, "mamo-hf pretrain: error: --train-file:", path.name, expected)


@pytest.mark.parametrize("workers", ["0", "1"])
def test_strict_stops_at_a_bad_record_with_one_line_naming_it(tmp_path, capsys, workers):
    Image.new("RGB", (16, 16), (200, 0, 0)).save(tmp_path / "a.png")
    records = [{"image": "gone.png", "caption": "a red circle"}] + [{"image": "a.png", "caption": "a red square"}] * 15
    (tmp_path / "c.json").write_text(json.dumps(records))
    code, stderr = run_main(
        capsys, "pretrain", "--output-dir", str(tmp_path / "run"), "--train-file", str(tmp_path / "c.json"),
        "--strict", "--batch-size", "4", "--max-steps", "2", "--image-size", "32", "--eval-pairs", "0",
        "--num-workers", workers, "--report-to", "csv",
    )  # fmt: skip
    assert code == 1
    one_line_error(
        None, stderr, f"mamo-hf pretrain: error: --strict: Bad record {tmp_path / 'c.json'}, record 0, image",
        "gone.png: missing image file. Fix or remove it, or drop --strict to skip bad records (they are counted and "
        "listed).",
    )  # fmt: skip


def write_empty_captions(folder: Path) -> Path:
    Image.new("RGB", (32, 32), "red").save(folder / "a.png")
    (folder / "c.json").write_text(json.dumps([{"image": "a.png", "caption": "  "}] * 8))
    return folder / "c.json"


def write_empty_shard_set(folder: Path) -> Path:
    import tarfile

    tarfile.open(folder / "empty.tar", "w").close()
    return folder / "empty.tar"


@pytest.mark.parametrize("workers", ["0", "1"])
@pytest.mark.parametrize(
    ("write_data", "expected"),
    [(write_empty_shard_set, ""), (write_empty_captions, " 8 records in a row from index")],
)
def test_data_without_a_usable_record_is_one_line_with_or_without_workers(tmp_path, workers, write_data, expected):
    """Not a hang (an empty shard set), nor "Caught ValueError in DataLoader worker" with a traceback in its text (a
    worker re-raising the dataset's error for captions that are all empty): one line naming the flag."""
    result = cli(
        "pretrain", "--output-dir", str(tmp_path / "run"), "--train-file", str(write_data(tmp_path)),
        "--max-steps", "2", "--image-size", "32", "--batch-size", "4", "--eval-pairs", "0", "--num-workers", workers,
        "--report-to", "csv", timeout=180,
    )  # fmt: skip
    assert result.returncode == 1
    one_line_error(result, result.stderr, f"mamo-hf pretrain: error: --train-file:{expected}")


def test_a_dataset_dict_trains_on_its_train_split_and_without_one_is_one_line(tmp_path, capsys):
    import datasets

    Image.new("RGB", (32, 32), "red").save(tmp_path / "a.png")
    split = datasets.Dataset.from_dict({"image": [str(tmp_path / "a.png")] * 8, "caption": ["a red square"] * 8})
    datasets.DatasetDict({"validation": split}).save_to_disk(tmp_path / "no_train")
    code, stderr = run_main(capsys, "pretrain", "--output-dir", str(tmp_path / "run"), "--hf-dataset",
                            str(tmp_path / "no_train"), "--image-size", "32", "--max-steps", "1")  # fmt: skip
    assert code == 1
    one_line_error(None, stderr, "a DatasetDict without a 'train' split (its splits: validation)")
    datasets.DatasetDict({"train": split}).save_to_disk(tmp_path / "with_train")
    code, _ = run_main(
        capsys, "pretrain", "--output-dir", str(tmp_path / "run2"), "--hf-dataset", str(tmp_path / "with_train"),
        "--image-size", "32", "--max-steps", "1", "--batch-size", "4", "--eval-pairs", "0", "--report-to", "csv",
    )  # fmt: skip
    assert code == 0 and (tmp_path / "run2" / "model.safetensors").is_file()


def test_an_hf_dataset_folder_that_cannot_be_loaded_or_has_no_image_column_is_one_line(tmp_path, capsys):
    import datasets

    arguments = ("--image-size", "32", "--max-steps", "1", "--batch-size", "4", "--eval-pairs", "0")
    damaged = tmp_path / "damaged"
    datasets.Dataset.from_dict({"image": ["a.png"], "caption": ["a"]}).save_to_disk(damaged)
    for arrow_file in damaged.glob("*.arrow"):
        arrow_file.unlink()  # what an interrupted copy leaves: the dataset's json files without its data
    code, stderr = run_main(capsys, "pretrain", "--output-dir", str(tmp_path / "run"), "--hf-dataset", str(damaged),
                            *arguments)  # fmt: skip
    assert code == 1
    one_line_error(None, stderr, f"--hf-dataset {damaged}: not a dataset that datasets.load_from_disk can read")
    numbers = tmp_path / "numbers"
    datasets.Dataset.from_dict({"image": [1, 2], "caption": ["a", "b"]}).save_to_disk(numbers)
    code, stderr = run_main(capsys, "pretrain", "--output-dir", str(tmp_path / "run"), "--hf-dataset", str(numbers),
                            *arguments)  # fmt: skip
    assert code == 1
    one_line_error(None, stderr, "--hf-dataset: The image column 'image' holds Value('int64'), not images")


def test_caption_negatives_work_from_a_caption_file_and_are_checked_before_any_work(tmp_path):
    for index, colour in enumerate(((200, 30, 30), (30, 30, 200))):
        Image.new("RGB", (32, 32), colour).save(tmp_path / f"{index}.png")
    records = [
        {"image": f"{i % 2}.png", "caption": f"a red circle left of a blue square number {i}"} for i in range(32)
    ]
    (tmp_path / "captions.json").write_text(json.dumps(records))
    arguments = {
        **TINY_RUN,
        "output_dir": str(tmp_path / "run"),
        "train_file": [str(tmp_path / "captions.json")],
        "max_steps": 3,
    }
    result = pretrain(PretrainingArguments(**arguments, caption_negatives=2))
    assert result.summary["steps"] == 3 and all(
        map(torch.isfinite, map(torch.tensor, result.summary["final_losses"].values()))
    )
    with pytest.raises(ValueError, match="--caption-negative-families"):
        validate_arguments(PretrainingArguments(**arguments, caption_negatives=2, caption_negative_families=["nope"]))
    with pytest.raises(ValueError, match="--caption-negatives"):
        validate_arguments(PretrainingArguments(**arguments, caption_negatives=-1))
    assert CaptionDataset(tmp_path / "captions.json")[0]["caption"].startswith("a red circle")


def test_minimal_pairs_need_an_even_batch_and_demo_data():
    from mamo_hf.training import PretrainingArguments
    from mamo_hf.training.data import build_train_dataset

    with pytest.raises(ValueError, match="even `--batch-size`"):
        build_train_dataset(PretrainingArguments(demo_minimal_pairs=1.0, batch_size=7), 64)
    with pytest.raises(ValueError, match="built-in demo data only"):
        build_train_dataset(PretrainingArguments(demo_minimal_pairs=1.0, train_file=["x.json"]), 64)
