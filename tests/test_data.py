"""Pre-training data: caption files, Hugging Face datasets and streams, bad records, sharding, augmentation, the
collator and the demo data. Real image files (PIL, in `tmp_path`), a real BERT tokenizer, no network."""

import csv
import io
import itertools
import json
import random
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from datasets import Dataset, Image, load_dataset
from PIL import Image as PILImage

from mamo_hf import MamoImageProcessorPil, MamoProcessor
from mamo_hf.data import (
    CaptionDataset,
    CaptionOptions,
    DemoCaptionDataset,
    HFCaptionDataset,
    PretrainingCollator,
    SkippedSample,
    StreamingCaptionDataset,
    TrainTransform,
    clean_caption,
    demo_tokenizer,
    write_demo_dataset,
)
from mamo_hf.data.transforms import mirror_caption

UNREADABLE = "unreadable image: not an image file of a format PIL knows"


def save_image(path, colour=(200, 30, 30), size=(20, 16)):
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.new("RGB", size, colour).save(path)
    return path


def png_bytes(colour=(30, 30, 200)) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", (12, 10), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def pixels(image) -> np.ndarray:
    return np.asarray(image)


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def captions_and_ids(dataset):
    items = [dataset[index] for index in range(len(dataset))]
    return [item["caption"] for item in items], [item["image_id"] for item in items]


@pytest.fixture
def bad_folder(tmp_path):
    """Six records: good, corrupt image, good, missing image, empty caption, good."""
    save_image(tmp_path / "a.png")
    save_image(tmp_path / "c.png", colour=(0, 200, 0))
    save_image(tmp_path / "f.png", colour=(0, 0, 200))
    (tmp_path / "corrupt.png").write_bytes(random.Random(0).randbytes(300))
    records = [
        {"image": "a.png", "caption": "pair zero"},
        {"image": "corrupt.png", "caption": "pair one"},
        {"image": "c.png", "caption": "pair two"},
        {"image": "missing.png", "caption": "pair three"},
        {"image": "a.png", "caption": " ?! "},
        {"image": "f.png", "caption": "pair five"},
    ]
    return (
        tmp_path,
        records,
        [(1, "corrupt.png", UNREADABLE), (3, "missing.png", "missing image file"), (4, "a.png", "empty caption")],
    )


def skips_of(folder, annotation_file: str, bad_records, place=lambda index: f"record {index}") -> set[SkippedSample]:
    """The `SkippedSample`s of `bad_records` (`(record index, image, reason)`): each named by its annotation file,
    its record (or line: `place`) and its image."""
    return {
        SkippedSample(f"{folder / annotation_file}, {place(index)}, image {folder / image}", reason)
        for index, image, reason in bad_records
    }


# ---------------------------------------------------------------------------------------------------------------
# Captions
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, max_words, expected",
    [
        ("A dog's  LEFT-hand paw, raised!", 30, "a dog's left-hand paw raised"),
        ("  Two\tcats;\n(sleeping)  on a mat.  ", 30, "two cats sleeping on a mat"),
        ("one two three four", 2, "one two"),
        ("one two three four", None, "one two three four"),
        ("?!...", 30, ""),
        ("   ", 30, ""),
        (None, 30, ""),
    ],
)
def test_clean_caption(text, max_words, expected):
    assert clean_caption(text, max_words) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("the cat on the left", "the cat on the right"),
        ("Left of the RIGHT one, right?", "Right of the LEFT one, left?"),
        ("his left-hand glove", "his right-hand glove"),
        ("a bright leftover copyright", "a bright leftover copyright"),
        ("the left's colour", "the right's colour"),
    ],
)
def test_mirror_caption_swaps_whole_words_and_keeps_case(text, expected):
    assert mirror_caption(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("the man left the room", "the man left the room"),
        ("a cat left alone on a couch", "a cat left alone on a couch"),
        ("a bag left behind at the station", "a bag left behind at the station"),
        ("the bus has left", "the bus has left"),
        ("a sandwich was left on the table", "a sandwich was left on the table"),
        ("there is nothing left of the cake", "there is nothing left of the cake"),
        ("he's left his bike by the door", "he's left his bike by the door"),
        ("a dog standing right next to a car", "a dog standing right next to a car"),
        ("a man on the left", "a man on the right"),
        ("a red circle left of a blue square", "a red circle right of a blue square"),
        ("a cup to the left of a plate", "a cup to the right of a plate"),
        ("the left side of a bus", "the right side of a bus"),
        ("a glove on his left hand", "a glove on his right hand"),
        ("a large red circle at the top left", "a large red circle at the top right"),
        ("the left one is red", "the right one is red"),
        ("a car turning left at the corner", "a car turning right at the corner"),
        ("a bag was left on the left side of a bench", "a bag was left on the right side of a bench"),
        ("a circle is left of a square", "a circle is right of a square"),
    ],
)
def test_mirror_caption_mirrors_sides_only_not_the_verb_left_nor_right_next_to(text, expected):
    assert mirror_caption(text) == expected


def test_mirror_caption_mirrors_every_left_and_right_of_the_demo_captions():
    dataset = DemoCaptionDataset(300, seed=0, templates=("list", "relation"))
    swapped = {"left": "right", "right": "left"}
    for index in range(300):
        caption = dataset[index]["caption"]
        assert mirror_caption(caption) == re.sub(r"\b(left|right)\b", lambda match: swapped[match[0]], caption)


# ---------------------------------------------------------------------------------------------------------------
# Input formats
# ---------------------------------------------------------------------------------------------------------------


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


def test_a_huge_jpeg_is_decoded_at_reduced_size_and_a_huge_png_is_skipped(tmp_path):
    PILImage.new("RGB", (400, 300), (200, 30, 30)).save(tmp_path / "big.jpg", quality=90)
    PILImage.new("RGB", (400, 300), (30, 200, 30)).save(tmp_path / "big.png")
    save_image(tmp_path / "small.png")
    records = [{"image": name, "caption": name} for name in ("big.jpg", "big.png", "small.png")]
    (tmp_path / "captions.json").write_text(json.dumps(records))
    dataset = CaptionDataset(tmp_path / "captions.json", options=CaptionOptions(max_image_pixels=40_000))
    jpeg = dataset[0]
    assert jpeg["caption"] == "big jpg" and jpeg["image"].size == (200, 150)  # decoded at 1/2, not at full size
    assert dataset[1]["caption"] == "small png"  # the PNG was skipped for the next good record
    (skipped,) = dataset[1]["skipped"]
    assert skipped.source.endswith("big.png") and "image too large: 400×300 pixels" in skipped.reason
    unlimited = CaptionDataset(tmp_path / "captions.json", options=CaptionOptions(max_image_pixels=None))
    assert unlimited[0]["image"].size == (400, 300)


def png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header says `width × height` pixels (its data is that of 8 × 8)."""
    import struct
    import zlib

    encoded = io.BytesIO()
    PILImage.new("RGB", (8, 8)).save(encoded, "PNG")
    data = bytearray(encoded.getvalue())
    data[16:24] = struct.pack(">II", width, height)  # the IHDR chunk's width and height, then its CRC
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def test_an_image_above_pils_own_limit_is_skipped_in_the_packages_words_even_without_a_limit(tmp_path):
    """PIL refuses any image above 2 × `PIL.Image.MAX_IMAGE_PIXELS` as a possible decompression bomb, before
    `max_image_pixels` is looked at: the record is skipped as "image too large", naming PIL's limit and how to
    raise it, also with `max_image_pixels=None` (no limit of the package's own)."""
    (tmp_path / "bomb.png").write_bytes(png_claiming(100_000, 100_000))
    save_image(tmp_path / "small.png")
    records = [{"image": name, "caption": name} for name in ("bomb.png", "small.png")]
    (tmp_path / "captions.json").write_text(json.dumps(records))
    for limit in (40_000, None):
        item = CaptionDataset(tmp_path / "captions.json", options=CaptionOptions(max_image_pixels=limit))[0]
        (skipped,) = item["skipped"]
        assert item["caption"] == "small png" and skipped.source.endswith("bomb.png")
        assert (
            skipped.reason.startswith("image too large: above PIL's limit of") and "MAX_IMAGE_PIXELS" in skipped.reason
        )


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


# ---------------------------------------------------------------------------------------------------------------
# Bad records in map-style datasets
# ---------------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------------
# Streaming
# ---------------------------------------------------------------------------------------------------------------


def test_streaming_one_pass_skips_bad_records_then_cycles(bad_folder):
    folder, records, expected = bad_folder
    lines = [json.dumps(record) for record in records]
    lines.insert(2, "{not json")
    (folder / "captions.jsonl").write_text("\n".join(lines) + "\n")
    stream = iter(StreamingCaptionDataset(folder / "captions.jsonl"))
    items = list(itertools.islice(stream, 3))
    assert [item["caption"] for item in items] == ["pair zero", "pair two", "pair five"]
    skipped = [skipped for item in items for skipped in item["skipped"]]
    bad_line = SkippedSample(f"{folder / 'captions.jsonl'}, line 3", "bad annotation: ")
    lines_after_the_bad_one = skips_of(
        folder, "captions.jsonl", expected, lambda index: f"line {index + 1 + (index >= 2)}"
    )
    assert set(skipped) - {skipped[1]} == lines_after_the_bad_one and len(skipped) == 4
    assert skipped[1].source == bad_line.source and skipped[1].reason.startswith(bad_line.reason)
    again = next(stream)  # the next pass
    assert again["caption"] == "pair zero" and again["image_id"] == items[0]["image_id"] and again["skipped"] == ()


def test_streaming_strict_raises_naming_the_file(bad_folder):
    folder, records, _ = bad_folder
    write_jsonl(folder / "captions.jsonl", records)
    stream = iter(StreamingCaptionDataset(folder / "captions.jsonl", options=CaptionOptions(strict=True)))
    assert next(stream)["caption"] == "pair zero"
    with pytest.raises(ValueError, match=r"corrupt\.png: unreadable image"):
        next(stream)


def test_streaming_csv_list_of_files_and_shared_image_ids(tmp_path):
    save_image(tmp_path / "a.png")
    write_jsonl(tmp_path / "one.jsonl", [{"image": "a.png", "caption": ["x", "y"]}])
    (tmp_path / "two.csv").write_text(f"image,caption\n{tmp_path / 'a.png'},z\n")
    items = list(itertools.islice(StreamingCaptionDataset([tmp_path / "one.jsonl", tmp_path / "two.csv"]), 3))
    assert [item["caption"] for item in items] == ["x", "y", "z"]
    assert len({item["image_id"] for item in items}) == 1
    with pytest.raises(ValueError, match=r"unknown format '\.json'"):
        StreamingCaptionDataset(tmp_path / "one.json")


def numbered_records(folder, count):
    save_image(folder / "a.png")
    return [{"image": "a.png", "caption": f"record {index}"} for index in range(count)]


def one_pass(stream) -> tuple[list[str], list[SkippedSample]]:
    """Captions and skips of one pass over a shard whose captions are unique: items up to the first repeat, whose
    `skipped` still belongs to the pass."""
    captions, skipped = [], []
    for item in stream:
        skipped += item["skipped"]
        if item["caption"] in captions:
            return captions, skipped
        captions.append(item["caption"])


def test_streaming_shards_over_ranks_and_workers_are_disjoint_and_cover_every_record(tmp_path, monkeypatch):
    write_jsonl(tmp_path / "c.jsonl", numbered_records(tmp_path, 11))
    shards = {}
    for rank, worker in itertools.product(range(2), range(2)):
        monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: SimpleNamespace(id=worker, num_workers=2))
        shards[rank, worker], _ = one_pass(StreamingCaptionDataset(tmp_path / "c.jsonl", rank=rank, world_size=2))
    for (rank, worker), captions in shards.items():
        assert captions == [f"record {index}" for index in range(rank * 2 + worker, 11, 4)]
    assert sorted(caption for captions in shards.values() for caption in captions) == sorted(
        f"record {index}" for index in range(11)
    )


def test_streaming_with_real_dataloader_workers(tmp_path):
    write_jsonl(tmp_path / "c.jsonl", numbered_records(tmp_path, 8))
    loader = torch.utils.data.DataLoader(
        StreamingCaptionDataset(tmp_path / "c.jsonl", options=CaptionOptions(transform=TrainTransform(8))),
        batch_size=2,
        num_workers=2,
        collate_fn=list,
    )
    items = [item for batch in itertools.islice(loader, 4) for item in batch]
    assert sorted(item["caption"] for item in items) == sorted(f"record {index}" for index in range(8))
    assert all(item["image"].size == (8, 8) for item in items)


def test_streaming_rank_arguments_are_checked(tmp_path):
    write_jsonl(tmp_path / "c.jsonl", numbered_records(tmp_path, 1))
    with pytest.raises(ValueError, match="both rank and world_size"):
        StreamingCaptionDataset(tmp_path / "c.jsonl", rank=1)
    with pytest.raises(ValueError, match="got no records"):
        next(iter(StreamingCaptionDataset(tmp_path / "c.jsonl", rank=1, world_size=2)))


def test_streaming_worker_without_records_stops_and_all_bad_shard_raises(tmp_path, monkeypatch):
    write_jsonl(tmp_path / "c.jsonl", numbered_records(tmp_path, 1) + [{"image": "gone.png", "caption": "x"}])
    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: SimpleNamespace(id=1, num_workers=2))
    with pytest.raises(ValueError, match=r"Every record of this shard was bad.*gone\.png"):
        next(iter(StreamingCaptionDataset(tmp_path / "c.jsonl")))
    assert list(StreamingCaptionDataset(tmp_path / "c.jsonl", rank=1, world_size=2)) == []


def test_streaming_hf_dataset_sharded_with_bad_records(tmp_path, monkeypatch):
    rows = [png_bytes() if index != 5 else b"not an image" for index in range(12)]
    dataset = Dataset.from_dict(
        {
            "image": [{"bytes": data, "path": None} for data in rows],
            "caption": [f"record {index}" for index in range(12)],
        }
    ).cast_column("image", Image())
    shards, skips = {}, []
    for rank, worker in itertools.product(range(2), range(2)):
        monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: SimpleNamespace(id=worker, num_workers=2))
        stream = StreamingCaptionDataset.from_hf_dataset(
            dataset.to_iterable_dataset(num_shards=4), rank=rank, world_size=2
        )
        shards[rank, worker], skipped = one_pass(stream)
        skips += skipped
    assert set().union(*shards.values()) == {f"record {index}" for index in range(12) if index != 5}
    assert len(skips) == 1 and skips[0].reason == UNREADABLE
    assert re.fullmatch(r"record \d+ of rank \d, worker \d", skips[0].source)
    assert sum(map(len, shards.values())) == 11  # disjoint


def test_streaming_hf_json_dataset_from_load_dataset(tmp_path):
    save_image(tmp_path / "a.png")
    save_image(tmp_path / "b.png")
    records = [
        {"image": str(tmp_path / "a.png"), "caption": "one"},
        {"image": str(tmp_path / "b.png"), "caption": "two"},
    ]
    write_jsonl(tmp_path / "c.jsonl", records + [{"image": str(tmp_path / "a.png"), "caption": "three"}])
    dataset = load_dataset("json", data_files=str(tmp_path / "c.jsonl"), split="train", streaming=True)
    items = list(itertools.islice(StreamingCaptionDataset.from_hf_dataset(dataset), 3))
    assert [item["caption"] for item in items] == ["one", "two", "three"]
    assert items[0]["image_id"] == items[2]["image_id"] != items[1]["image_id"]


# ---------------------------------------------------------------------------------------------------------------
# Augmentation
# ---------------------------------------------------------------------------------------------------------------


def two_colour_image(width=40, height=40):
    """Red on the left half, blue on the right half."""
    image = PILImage.new("RGB", (width, height), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, width // 2, height))
    return image


def test_train_transform_size_and_flip_that_agrees_with_the_caption():
    transform = TrainTransform(16, scale=(0.9, 1.0))
    flips = []
    for seed in range(20):
        image, caption = transform(two_colour_image(48, 40), "red on the left, blue on the right", random.Random(seed))
        assert image.size == (16, 16) and image.mode == "RGB"
        flipped = pixels(image)[8, 0, 2] > pixels(image)[8, 0, 0]  # blue at the left edge
        assert caption == ("red on the right, blue on the left" if flipped else "red on the left, blue on the right")
        flips.append(flipped)
    assert any(flips) and not all(flips)


def test_train_transform_leaves_other_words_and_follows_the_probability():
    image = two_colour_image()
    text = "a bright leftover on the Left"
    assert (
        TrainTransform(8, flip_probability=1.0)(image, text, random.Random(0))[1] == "a bright leftover on the Right"
    )
    assert TrainTransform(8, flip_probability=0.0)(image, text, random.Random(0))[1] == text


@pytest.mark.parametrize(
    "kwargs", [{"image_size": 0}, {"scale": (0.0, 1.0)}, {"scale": (0.8, 0.5)}, {"flip_probability": 2}]
)
def test_train_transform_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="TrainTransform"):
        TrainTransform(**{"image_size": 8, **kwargs})


def test_augmentation_depends_on_seed_epoch_and_index_only(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    PILImage.fromarray(noise).save(tmp_path / "noise.png")
    write_jsonl(tmp_path / "c.jsonl", [{"image": "noise.png", "caption": f"pair {index}"} for index in range(3)])

    def images(seed=0, epoch=0):
        dataset = CaptionDataset(tmp_path / "c.jsonl", options=CaptionOptions(transform=TrainTransform(16), seed=seed))
        dataset.set_epoch(epoch)
        return [pixels(dataset[index]["image"]) for index in (2, 0, 1)]

    first = images()
    assert all(np.array_equal(a, b) for a, b in zip(first, images()))
    assert not any(np.array_equal(a, b) for a, b in zip(first, images(epoch=1)))
    assert not any(np.array_equal(a, b) for a, b in zip(first, images(seed=1)))
    assert not np.array_equal(first[1], first[2])  # different indices, different crops


def test_no_transform_passes_images_through(tmp_path):
    save_image(tmp_path / "a.png", size=(33, 17))
    write_jsonl(tmp_path / "c.jsonl", [{"image": "a.png", "caption": "x"}])
    assert CaptionDataset(tmp_path / "c.jsonl")[0]["image"].size == (33, 17)


# ---------------------------------------------------------------------------------------------------------------
# Collator
# ---------------------------------------------------------------------------------------------------------------


def test_collator_outputs_ids_skips_and_truncation():
    processor = MamoProcessor(MamoImageProcessorPil(size={"height": 32, "width": 32}), demo_tokenizer())
    skip = SkippedSample("gone.png", "missing image file")
    items = [
        {"image": two_colour_image(20, 10), "caption": "a red circle", "image_id": 7, "skipped": (), "sample_key": 11},
        {
            "image": two_colour_image(),
            "caption": "there is " + "a small red circle and " * 5,
            "image_id": 7,
            "skipped": (skip,),
            "sample_key": 12,
        },
        {"image": two_colour_image(), "caption": "a blue square", "image_id": 3, "skipped": (), "sample_key": 13},
    ]
    batch = PretrainingCollator(processor, max_length=8)(items)
    assert set(batch) == {"pixel_values", "input_ids", "attention_mask", "image_ids"}  # model inputs only
    assert batch["pixel_values"].shape == (3, 3, 32, 32)
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (3, 8)
    assert batch["attention_mask"].sum(dim=1).tolist() == [5, 8, 5]  # [CLS] + 3 words + [SEP]; truncated
    assert batch["image_ids"].dtype == torch.long and batch["image_ids"].tolist() == [7, 7, 3]
    assert batch.skipped == [skip]
    short = PretrainingCollator(processor)([items[0], items[2]])
    assert short["input_ids"].shape == (2, 5)  # padded to the longest caption


# ---------------------------------------------------------------------------------------------------------------
# Demo data
# ---------------------------------------------------------------------------------------------------------------


def folder_bytes(folder) -> dict:
    return {path.relative_to(folder): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_write_demo_dataset_is_deterministic_and_loads(tmp_path):
    first = write_demo_dataset(tmp_path / "one", 6, seed=4, image_size=32)
    write_demo_dataset(tmp_path / "two", 6, seed=4, image_size=32)
    other = write_demo_dataset(tmp_path / "three", 6, seed=5, image_size=32)
    assert first == tmp_path / "one" / "captions.json"
    assert folder_bytes(tmp_path / "one") == folder_bytes(tmp_path / "two")
    assert first.read_bytes() != other.read_bytes()
    assert len(folder_bytes(tmp_path / "one")) == 7  # 6 images and the annotation file

    dataset = CaptionDataset(first)
    captions, image_ids = captions_and_ids(dataset)
    assert image_ids == list(range(6)) and dataset[0]["image"].size == (32, 32)
    assert captions == [DemoCaptionDataset(6, seed=4)[index]["caption"] for index in range(6)]
    jsonl = write_demo_dataset(tmp_path / "four", 6, seed=4, image_size=32, file_format="jsonl")
    assert jsonl.name == "captions.jsonl" and captions_and_ids(CaptionDataset(jsonl))[0] == captions


def test_demo_caption_dataset_is_deterministic_per_index():
    dataset = DemoCaptionDataset(8, seed=1, image_size=32)
    item = dataset[5]
    assert set(item) == {"image", "caption", "image_id", "skipped", "sample_key"}
    assert item["image_id"] == 5 and item["skipped"] == ()
    assert item["sample_key"] == dataset[5]["sample_key"] != dataset[4]["sample_key"]
    dataset.set_epoch(1)
    assert dataset[5]["sample_key"] != item["sample_key"]  # new masks every epoch
    dataset.set_epoch(0)
    assert item["image"].size == (32, 32) and item["caption"].startswith("there is a")
    again = DemoCaptionDataset(20, seed=1, image_size=32)[5]
    assert again["caption"] == item["caption"] and np.array_equal(pixels(again["image"]), pixels(item["image"]))
    other = [DemoCaptionDataset(8, seed=2)[index]["caption"] for index in range(8)]
    assert other != [dataset[index]["caption"] for index in range(8)]
    assert len(dataset) == 8


def test_demo_caption_dataset_with_transform_flips_position_words():
    dataset = DemoCaptionDataset(30, seed=0, transform=TrainTransform(24, flip_probability=1.0))
    plain = DemoCaptionDataset(30, seed=0)
    for index in range(30):
        assert dataset[index]["caption"] == mirror_caption(plain[index]["caption"])
