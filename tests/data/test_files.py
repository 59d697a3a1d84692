"""Data files (`mamo_hf.data.files`): paths, globs and brace ranges; annotation files read whatever their byte-order
mark, and named when they cannot be read (bad JSON, CSV header, encoding or suffix)."""

import json
import logging

import pytest
from helpers import save_image
from PIL import Image

from mamo_hf.data import CaptionDataset
from mamo_hf.data.files import expand_braces, expand_data_files

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("bad.json", '[{"image": "a.png", "caption": "x"},\n oops]', r"bad\.json: not valid JSON \(line 2"),
        ("bad.json", '{"image": "a.png", "caption": "x"}', r"bad\.json: expected a JSON list"),
        ("bad.csv", "path,caption\na.png,x\n", r"bad\.csv: the CSV header must name"),
        ("bad.txt", "a.png x\n", r"unknown format '\.txt'"),
        ("empty.json", "[]", r"No usable records"),
    ],
)
def test_bad_annotation_files_raise_naming_the_file(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(ValueError, match=message):
        CaptionDataset(tmp_path / name)


def test_a_non_utf8_annotation_file_is_named(tmp_path):
    for name in ("latin1.json", "latin1.csv"):
        text = '[{"image": "a.png", "caption": "café"}]' if name.endswith("json") else "image,caption\na.png,café\n"
        (tmp_path / name).write_bytes(text.encode("latin-1"))
        with pytest.raises(ValueError, match=f"{name}: not UTF-8 text"):
            CaptionDataset(tmp_path / name)
    # JSONL is read line by line: the bad line is a bad record
    save_image(tmp_path / "a.png")
    (tmp_path / "mixed.jsonl").write_bytes(
        b'{"image": "a.png", "caption": "fine"}\n{"image": "a.png", "caption": "caf\xe9"}\n'
    )
    dataset = CaptionDataset(tmp_path / "mixed.jsonl")
    assert len(dataset) == 1 and dataset.annotation_errors[0].source.endswith("mixed.jsonl, line 2")


@pytest.mark.parametrize(
    "pattern, expected",
    [
        ("shards/{00000..00003}.tar", [f"shards/{n:05d}.tar" for n in range(4)]),
        ("s{8..11}", ["s8", "s9", "s10", "s11"]),
        ("{008..010}", ["008", "009", "010"]),
        ("{10..4..3}", ["10", "7", "4"]),
        (
            "{a,b}/{0..1}.{tar,pq}",
            ["a/0.tar", "a/0.pq", "a/1.tar", "a/1.pq", "b/0.tar", "b/0.pq", "b/1.tar", "b/1.pq"],
        ),
        ("{a,b{1,2}}x", ["ax", "b1x", "b2x"]),
        ("{,x}y", ["y", "xy"]),
        ("plain/file.tar", ["plain/file.tar"]),
        ("{abc}{}{1..2", ["{abc}{}{1..2"]),
        ("{abc}-{1,2}", ["{abc}-1", "{abc}-2"]),
    ],
)
def test_expand_braces(pattern, expected):
    assert expand_braces(pattern) == expected


def test_expand_data_files_reads_ranges_globs_and_lists_in_order(tmp_path, caplog):
    for name in ("00000.tar", "00001.tar", "00003.tar", "b.parquet", "a.parquet"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "folder.parquet").mkdir()
    with caplog.at_level(logging.WARNING):
        files = expand_data_files([str(tmp_path / "{00000..00003}.tar"), str(tmp_path / "0000[01].tar")])
    assert files == [str(tmp_path / f"0000{number}.tar") for number in (0, 1, 3, 0, 1)]  # as the list names them
    assert expand_data_files(str(tmp_path / "{00000,00000,00001}.tar")) == files[:2]  # once per pattern
    assert "1 of 4 names match no file" in caplog.text and "00002.tar" in caplog.text
    assert expand_data_files(tmp_path / "*.parquet") == [str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")]
    with pytest.raises(FileNotFoundError, match=r"shards/\{00000\.\.00099\}\.tar: no file matches this pattern"):
        expand_data_files(["shards/{00000..00099}.tar"])
    with pytest.raises(FileNotFoundError, match=r"\*\.jsonl: no file matches"):
        expand_data_files([str(tmp_path / "00000.tar"), str(tmp_path / "*.jsonl")])
    with pytest.raises(FileNotFoundError, match="gone.tar: no such file"):
        expand_data_files("gone.tar")


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".csv"])
def test_annotation_files_with_a_byte_order_mark_keep_their_first_record(tmp_path, suffix):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    records = [{"image": "a.png", "caption": "first"}, {"image": "a.png", "caption": "second"}]
    if suffix == ".json":
        text = json.dumps(records)
    elif suffix == ".jsonl":
        text = "\n".join(json.dumps(record) for record in records)
    else:
        text = "image,caption\n" + "\n".join(f"{r['image']},{r['caption']}" for r in records)
    (tmp_path / f"captions{suffix}").write_text("\ufeff" + text, encoding="utf-8")
    dataset = CaptionDataset(tmp_path / f"captions{suffix}")
    assert [dataset[index]["caption"] for index in range(len(dataset))] == ["first", "second"]
    assert dataset.annotation_errors == []


def test_a_file_whose_name_holds_braces_or_glob_characters_is_that_file(tmp_path):
    """Issue 29: an existing `--train-file` named with literal braces was read as a pattern: "no file matches"."""
    for name in ("caps {v1}.json", "caps [old].json"):
        (tmp_path / name).write_text("[]")
        assert expand_data_files([str(tmp_path / name)]) == [str(tmp_path / name)]
