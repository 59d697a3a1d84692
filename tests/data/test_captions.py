"""Caption datasets (`mamo_hf.data.captions`): `CaptionDataset` over JSON, JSONL and CSV files and an image folder,
`HFCaptionDataset` over a Hugging Face dataset; bad records replaced by the next good one and reported once, or
raised with `strict`. Real image files (PIL, in `tmp_path`), no network."""

import csv
import json
import random
import re

import pytest
import torch
from datasets import Dataset, Image
from helpers import UNREADABLE, bad_records_folder, captions_and_ids, png_bytes, save_image, skips_of, write_jsonl

from mamo_hf import MamoImageProcessorPil, MamoProcessor
from mamo_hf.data import (
    CaptionDataset,
    CaptionOptions,
    HFCaptionDataset,
    PretrainingCollator,
    SkippedSample,
    StreamingCaptionDataset,
    demo_tokenizer,
)


def test_json_with_string_and_list_captions(tmp_path):
    save_image(tmp_path / "a.png")
    save_image(tmp_path / "sub" / "b.png")
    records = [
        {"image": "a.png", "caption": "A red square."},
        {"image": "sub/b.png", "caption": ["One", "Two!"]},
        {"image": str(tmp_path / "a.png"), "caption": "absolute path"},
    ]
    (tmp_path / "captions.json").write_text(json.dumps(records))
    dataset = CaptionDataset(tmp_path / "captions.json")
    assert len(dataset) == 4
    assert captions_and_ids(dataset) == (["a red square", "one", "two", "absolute path"], [0, 1, 1, 0])
    assert dataset.image_paths == [str(tmp_path / "a.png"), str(tmp_path / "sub" / "b.png")]
    item = dataset[1]
    assert item["image"].mode == "RGB" and item["image"].size == (20, 16) and item["skipped"] == ()


def test_jsonl_csv_several_files_and_image_root(tmp_path):
    images = tmp_path / "images"
    save_image(images / "a.png")
    save_image(images / "b.png")
    annotations = tmp_path / "annotations"
    annotations.mkdir()
    write_jsonl(
        annotations / "part1.jsonl", [{"image": "a.png", "caption": "first"}, {"image": "b.png", "caption": ""}]
    )
    with open(annotations / "part2.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerows([["image", "caption"], ["b.png", "Second, with a comma"], ["a.png", "third"]])
    dataset = CaptionDataset([annotations / "part1.jsonl", annotations / "part2.csv"], image_root=images)
    assert len(dataset) == 4
    captions, image_ids = captions_and_ids(dataset)
    assert captions == ["first", "second with a comma", "second with a comma", "third"]  # pair 1: empty, replaced
    assert image_ids == [0, 1, 1, 0]
    assert dataset[1]["skipped"] == (
        SkippedSample(f"{annotations / 'part1.jsonl'}, line 2, image {images / 'b.png'}", "empty caption"),
    )


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("bad.json", '[{"image": "a.png", "caption": "x"}, {"image": "b.png"}]', r"bad\.json, record 1: .*'caption'"),
        ("bad.json", '[{"image": "a.png", "caption": "x"}, {"image": "a.png", "caption": 3}]', r"record 1: 'caption'"),
        ("bad.json", '[{"image": "a.png", "caption": "x"}, "a.png"]', r"bad\.json, record 1: a record needs"),
        ("bad.jsonl", '{"image": "a.png", "caption": "x"}\n\n{"caption": "y"}\n', r"bad\.jsonl, line 3: .*'image'"),
        ("bad.jsonl", '{"image": "a.png", "caption": "x"}\n{nope\n', r"bad\.jsonl, line 2: not valid JSON"),
        ("bad.jsonl", '{"image": "a.png", "caption": "x"}\n{"image": "../a.png", "caption": "y"}\n', r"leads out of"),
    ],
)
def test_a_bad_record_is_skipped_and_listed_or_with_strict_raises_naming_it(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    dataset = CaptionDataset(tmp_path / name)
    assert len(dataset) == 1 and len(dataset.annotation_errors) == 1
    assert re.search(message, dataset.annotation_errors[0].reason)
    with pytest.raises(ValueError, match=message):
        CaptionDataset(tmp_path / name, options=CaptionOptions(strict=True))


def test_image_paths_outside_the_root_are_refused_unless_allowed(tmp_path):
    outside = save_image(tmp_path / "elsewhere" / "x.png")
    root = tmp_path / "data"
    save_image(root / "a.png")
    records = [{"image": "a.png", "caption": "in"}, {"image": str(outside), "caption": "out"}]
    records.append({"image": "../elsewhere/x.png", "caption": "up"})
    (root / "captions.json").write_text(json.dumps(records))
    dataset = CaptionDataset(root / "captions.json")
    assert [dataset[0]["caption"]] == ["in"] and len(dataset) == 1
    assert len(dataset.annotation_errors) == 2
    allowed = CaptionDataset(root / "captions.json", options=CaptionOptions(allow_absolute_paths=True))
    assert [allowed[index]["caption"] for index in range(3)] == ["in", "out", "up"]


def test_hf_dataset_with_paths_and_list_captions(tmp_path):
    paths = [str(save_image(tmp_path / name)) for name in ("a.png", "b.png")]
    dataset = Dataset.from_dict(
        {"img": [paths[0], paths[1], paths[0]], "text": [["A", "B"], ["C"], ["D"]], "other": [1, 2, 3]}
    ).cast_column("img", Image())
    pairs = HFCaptionDataset(dataset, image_column="img", text_column="text")
    assert len(pairs) == 4
    assert captions_and_ids(pairs) == (["a", "b", "c", "d"], [0, 0, 1, 0])  # row 2 has row 0's image path
    assert pairs[3]["image"].size == (20, 16)


def test_hf_dataset_of_image_bytes_ids_by_row_and_bad_records():
    rows = [png_bytes(), random.Random(1).randbytes(200), png_bytes((9, 9, 9)), png_bytes(), png_bytes(), None]
    captions = ["zero", "corrupt bytes", "two", "", "four", "no image"]
    dataset = Dataset.from_dict(
        {"image": [data and {"bytes": data, "path": None} for data in rows], "caption": captions}
    ).cast_column("image", Image())
    pairs = HFCaptionDataset(dataset)
    items = [pairs[index] for index in range(len(pairs))]
    assert len(items) == 6
    assert [item["caption"] for item in items] == ["zero", "two", "two", "four", "four", "zero"]
    assert [item["image_id"] for item in items] == [0, 2, 2, 4, 4, 0]
    assert [skipped for item in items for skipped in item["skipped"]] == [
        SkippedSample("row 1", UNREADABLE),
        SkippedSample("row 3", "empty caption"),
        SkippedSample("row 5", "missing image"),
    ]
    with pytest.raises(ValueError, match="Bad record row 1: unreadable image"):
        HFCaptionDataset(dataset, options=CaptionOptions(strict=True))[1]


def test_hf_dataset_errors():
    dataset = Dataset.from_dict({"image": [png_bytes()], "caption": ["x"]})
    with pytest.raises(ValueError, match="text column 'text'.*image_column= and text_column="):
        HFCaptionDataset(dataset, text_column="text")
    with pytest.raises(TypeError, match="from_hf_dataset"):
        HFCaptionDataset(dataset.to_iterable_dataset())
    with pytest.raises(TypeError, match="HFCaptionDataset"):
        StreamingCaptionDataset.from_hf_dataset(dataset)
    numbers = Dataset.from_dict({"image": [png_bytes()], "caption": [3]})
    with pytest.raises(ValueError, match=r"text column 'caption' holds Value\('int64'\), not captions"):
        HFCaptionDataset(numbers)
    number_lists = Dataset.from_dict({"image": [png_bytes()], "caption": [[3, 4]]})
    with pytest.raises(ValueError, match="text column 'caption' holds List"):
        HFCaptionDataset(number_lists)


@pytest.mark.parametrize("streaming", [False, True])
def test_hf_dataset_columns_that_cannot_be_images_and_captions_are_named(streaming):
    """Numbers in the image column died in pyarrow's cast ("Unsupported cast from int64 to struct"), and one column
    given as both image and text died in a KeyError about a duplicate field; a map-style and a streaming dataset are
    checked alike."""

    def build(data):
        dataset = Dataset.from_dict(data)
        if streaming:
            return StreamingCaptionDataset.from_hf_dataset(dataset.to_iterable_dataset(), **columns)
        return HFCaptionDataset(dataset, **columns)

    columns = {}
    with pytest.raises(ValueError, match=r"image column 'image' holds Value\('int64'\), not images.*--image-column"):
        build({"image": [1, 2], "caption": ["a", "b"]})
    columns = {"image_column": "caption", "text_column": "caption"}
    with pytest.raises(ValueError, match="the text column are both 'caption'; name two different columns"):
        build({"image": [png_bytes()], "caption": ["a"]})
    columns = {}
    with pytest.raises(ValueError, match=r"text column 'caption' holds Value\('int64'\)"):
        build({"image": [png_bytes()], "caption": [3]})
    # paths, bytes and missing images are image sources (a missing one is a bad record, skipped and counted)
    for images in (["a.png"], [png_bytes()], [None]):
        build({"image": images, "caption": ["a"]})


@pytest.fixture
def bad_folder(tmp_path):
    return bad_records_folder(tmp_path)


def test_bad_records_are_replaced_and_reported_once(bad_folder):
    folder, records, expected = bad_folder
    (folder / "captions.json").write_text(json.dumps(records))
    dataset = CaptionDataset(folder / "captions.json")
    items = [dataset[index] for index in range(len(dataset))]
    assert len(items) == len(dataset) == 6
    captions = [item["caption"] for item in items]
    assert captions == ["pair zero", "pair two", "pair two", "pair five", "pair five", "pair five"]
    # Item 3 reports record 3 only, though its replacement skipped the bad record 4 too: 4 is reported by item 4.
    assert [len(item["skipped"]) for item in items] == [0, 1, 0, 1, 1, 0]
    assert {skipped for item in items for skipped in item["skipped"]} == skips_of(folder, "captions.json", expected)


def test_bad_record_at_the_end_wraps_around(tmp_path):
    save_image(tmp_path / "a.png")
    write_jsonl(tmp_path / "c.jsonl", [{"image": "a.png", "caption": "good"}, {"image": "gone.png", "caption": "x"}])
    item = CaptionDataset(tmp_path / "c.jsonl")[1]
    assert item["caption"] == "good" and item["skipped"] == (
        SkippedSample(f"{tmp_path / 'c.jsonl'}, line 2, image {tmp_path / 'gone.png'}", "missing image file"),
    )


def test_dataloader_batches_keep_their_size_and_count_every_skip(bad_folder):
    folder, records, expected = bad_folder
    (folder / "captions.json").write_text(json.dumps(records))
    processor = MamoProcessor(MamoImageProcessorPil(size={"height": 32, "width": 32}), demo_tokenizer())
    loader = torch.utils.data.DataLoader(
        CaptionDataset(folder / "captions.json"), batch_size=3, shuffle=True, collate_fn=PretrainingCollator(processor)
    )
    batches = list(loader)
    assert [batch["input_ids"].shape[0] for batch in batches] == [3, 3]
    assert {skipped for batch in batches for skipped in batch.skipped} == skips_of(folder, "captions.json", expected)
    assert sum(len(batch.skipped) for batch in batches) == 3


def test_strict_raises_naming_the_file(bad_folder):
    folder, records, _ = bad_folder
    (folder / "captions.json").write_text(json.dumps(records))
    dataset = CaptionDataset(folder / "captions.json", options=CaptionOptions(strict=True))
    assert dataset[0]["caption"] == "pair zero"
    with pytest.raises(ValueError, match=r"corrupt\.png: unreadable image"):
        dataset[1]
    with pytest.raises(ValueError, match=r"missing\.png: missing image file"):
        dataset[3]


def test_all_bad_records_raise_a_clear_error(tmp_path):
    write_jsonl(tmp_path / "c.jsonl", [{"image": f"gone{index}.png", "caption": "x"} for index in range(3)])
    with pytest.raises(ValueError, match=r"3 records in a row from index 1 on are bad .*gone0\.png"):
        CaptionDataset(tmp_path / "c.jsonl")[1]
    with pytest.raises(IndexError):
        CaptionDataset(tmp_path / "c.jsonl")[3]
