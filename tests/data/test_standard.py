"""Standard caption data on disk (`mamo_hf.data.standard`): COCO and Karpathy caption files converted. The files are
tiny ones in the published formats (`helpers`): the same file names, keys, nesting and value types, with a few
records and generated images."""

from pathlib import Path

import pytest
from helpers import STANDARD_COLOURS as COLOURS
from helpers import assert_bad_files_are_named, coco_captions, has_colour, karpathy_coco, karpathy_flickr
from PIL import Image

from mamo_hf.data.captions import CaptionDataset
from mamo_hf.data.retrieval import load_retrieval_split
from mamo_hf.data.standard import (
    coco_caption_records,
    karpathy_caption_records,
    karpathy_images,
    karpathy_retrieval_records,
    karpathy_retrieval_split,
    write_json,
)


def test_coco_captions_become_pretraining_records_that_caption_dataset_reads(tmp_path):
    records = coco_caption_records(coco_captions(tmp_path), image_folder="train2014")
    assert records == [
        {"image": "train2014/COCO_train2014_000000000009.jpg", "caption": "A red picture of a cat.", "image_id": 9},
        {
            "image": "train2014/COCO_train2014_000000000025.jpg",
            "caption": "A green square on the left ",
            "image_id": 25,
        },
        {
            "image": "train2014/COCO_train2014_000000000009.jpg",
            "caption": "The cat sits on a red square.",
            "image_id": 9,
        },
    ]
    dataset = CaptionDataset(write_json(records, tmp_path / "coco_captions.json"), image_root=tmp_path)
    items = [dataset[index] for index in range(len(dataset))]
    assert [item["caption"] for item in items] == [
        "a red picture of a cat",
        "a green square on the left",
        "the cat sits on a red square",
    ]
    assert items[0]["image_id"] == items[2]["image_id"] != items[1]["image_id"]
    assert has_colour(items[1]["image"], COLOURS[1])


def test_karpathy_training_records_and_retrieval_files_read_back(tmp_path):
    karpathy = karpathy_coco(tmp_path)
    training = karpathy_caption_records(karpathy)
    assert len(training) == 10 and {record["image_id"] for record in training} == {1000, 1001}
    assert training[0] == {
        "image": "train2014/COCO_train2014_000000001000.jpg",
        "caption": "A red picture number 0.",
        "image_id": 1000,
    }
    assert len(karpathy_caption_records(karpathy, ["train"])) == 5
    assert len(CaptionDataset(write_json(training, tmp_path / "coco_train.json"), image_root=tmp_path)) == 10

    test = karpathy_retrieval_records(karpathy, "test")
    assert [record["image"] for record in test] == [
        "val2014/COCO_val2014_000000001003.jpg",
        "val2014/COCO_val2014_000000001004.jpg",
    ]
    assert test[1]["caption"] == [
        f"A {colour} picture number 4." for colour in ("red", "green", "blue", "black", "white")
    ]
    split = load_retrieval_split(write_json(test, tmp_path / "coco_test.json"))
    assert split.images == [str(tmp_path / record["image"]) for record in test]
    assert split.texts[5] == "a red picture number 4" and split.image_to_texts == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert split.text_to_image == [0] * 5 + [1] * 5
    assert karpathy_retrieval_split(karpathy, tmp_path, "test") == split
    assert len(karpathy_retrieval_split(karpathy, tmp_path, "val").images) == 1


def test_flickr_karpathy_paths_take_the_image_folder_and_ids_the_imgid(tmp_path):
    karpathy = karpathy_flickr(tmp_path)
    assert karpathy_caption_records(karpathy, image_folder="flickr30k-images") == [
        {"image": "flickr30k-images/1000092795.jpg", "caption": "Two dogs sit on the grass.", "image_id": 0}
    ]
    test = karpathy_retrieval_records(karpathy, "test", image_folder="flickr30k-images")
    assert test == [{"image": "flickr30k-images/1007129816.jpg", "caption": ["A cat on a blue square."]}]
    split = karpathy_retrieval_split(karpathy, tmp_path, image_folder="flickr30k-images")
    assert has_colour(Image.open(split.images[0]), COLOURS[1])


def _bad_files(tmp_path: Path) -> list[tuple]:
    """(reader, file to spoil, new content, expected message) for the readers' format errors."""
    coco = coco_captions(tmp_path / "coco")
    karpathy = karpathy_coco(tmp_path / "karpathy")
    return [
        (lambda: coco_caption_records(coco), coco, "{not json", "not valid JSON"),
        (lambda: coco_caption_records(coco), coco, {"images": []}, "'images' and 'annotations'"),
        (
            lambda: coco_caption_records(coco),
            coco,
            {"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"image_id": 2, "id": 3, "caption": "x"}]},
            r"annotations\[0\]: image_id 2 is not among",
        ),
        (lambda: karpathy_images(karpathy, ["test"]), karpathy, [], "an 'images' list"),
        (
            lambda: karpathy_images(karpathy, ["test"]),
            karpathy,
            {"images": [{"filename": "a.jpg", "split": "test", "sentences": [{"tokens": ["a"]}]}]},
            r"images\[0\]: every sentence needs its 'raw' text",
        ),
        (
            lambda: karpathy_images(karpathy, ["test"]),
            karpathy,
            {"images": [{"filename": "a.jpg", "split": "train", "sentences": []}], "dataset": "coco"},
            "no image in the split",
        ),
    ]


def test_bad_files_raise_a_value_error_naming_the_file(tmp_path):
    assert_bad_files_are_named(_bad_files(tmp_path))
    with pytest.raises(ValueError, match="Unknown Karpathy split 'testing'"):
        karpathy_images(tmp_path / "karpathy" / "dataset_coco.json", ["testing"])
