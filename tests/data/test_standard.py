"""Standard data on disk (`mamo_hf.data.standard`): COCO and Karpathy caption files converted, Winoground, ARO and
SugarCrepe read. The files are tiny ones in the published formats (`helpers`): the same file names, keys, nesting
and value types, with a few records and generated images."""

import json
from pathlib import Path

import pytest
from helpers import STANDARD_COLOURS as COLOURS
from helpers import WINOGROUND_CAPTIONS, aro, coco_captions, karpathy_coco, karpathy_flickr, sugarcrepe, winoground
from PIL import Image

from mamo_hf.data.captions import CaptionDataset
from mamo_hf.data.retrieval import load_retrieval_split
from mamo_hf.data.standard import (
    aro_examples,
    coco_caption_records,
    karpathy_caption_records,
    karpathy_images,
    karpathy_retrieval_records,
    karpathy_retrieval_split,
    sugarcrepe_examples,
    winoground_examples,
    write_json,
)


def has_colour(image: Image.Image, colour, position=(0, 0)) -> bool:
    """Whether a pixel is `colour`, up to JPEG's rounding."""
    return max(abs(a - b) for a, b in zip(image.convert("RGB").getpixel(position), colour)) <= 8


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


def test_winoground_examples_pair_each_caption_with_its_image(tmp_path):
    examples = winoground_examples(winoground(tmp_path))
    assert len(examples) == 3
    second = examples[1]
    assert (second.id, second.captions) == (1, WINOGROUND_CAPTIONS[1])
    assert [image.getpixel((0, 0)) for image in second.images] == [COLOURS[2], COLOURS[3]]
    assert (second.tag, second.secondary_tag, second.num_main_preds, second.collapsed_tag) == ("Noun", "", 1, "Object")
    assert [example.id for example in examples[1:]] == [1, 2]


def test_aro_items_crop_the_box_and_put_the_true_caption_second(tmp_path):
    root = aro(tmp_path)
    relation = aro_examples(root, "relation")
    assert len(relation) == 3
    first = relation[0]
    assert first.captions == ("the dog is on the cat", "the cat is on the dog") and first.answer == 1
    assert first.group == "on" and first.source.endswith("visual_genome_relation.json, record 0")
    assert first.image.size == (20, 10) and has_colour(first.image, COLOURS[0], (10, 5))  # the box alone
    attribution = aro_examples(root, "attribution")
    assert [item.group for item in attribution] == ["red_large", "green_small"]
    assert attribution[1].captions[attribution[1].answer] == "the green square and the small star"


def test_sugarcrepe_items_read_every_file_there_with_the_true_caption_first(tmp_path):
    data_root, image_root = sugarcrepe(tmp_path)
    items = sugarcrepe_examples(data_root, image_root)
    assert [item.group for item in items] == ["replace_rel", "swap_att", "swap_att"]  # SUGARCREPE_FILES order
    swap = items[1]
    assert swap.captions == ("A red cat with a blue dog.", "A blue cat with a red dog.") and swap.answer == 0
    assert has_colour(swap.image, COLOURS[0]) and swap.source.endswith("swap_att.json, record '0'")
    assert [item.group for item in sugarcrepe_examples(data_root, image_root, ["swap_att"])] == ["swap_att"] * 2
    with pytest.raises(FileNotFoundError, match="add_obj.json"):
        sugarcrepe_examples(data_root, image_root, ["add_obj"])
    with pytest.raises(FileNotFoundError, match="none of SugarCrepe's files"):
        sugarcrepe_examples(tmp_path, image_root)


def _bad_files(tmp_path: Path) -> list[tuple]:
    """(reader, file to spoil, new content, expected message) for the readers' format errors."""
    coco = coco_captions(tmp_path / "coco")
    karpathy = karpathy_coco(tmp_path / "karpathy")
    wino = winoground(tmp_path / "winoground") / "examples.jsonl"
    aro_root = aro(tmp_path / "aro")
    sugar_root, sugar_images = sugarcrepe(tmp_path / "sugarcrepe")
    good_line = wino.read_text().splitlines()[0]
    no_caption_1 = json.dumps({key: value for key, value in json.loads(good_line).items() if key != "caption_1"})
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
        (lambda: winoground_examples(wino.parent), wino, good_line + "\n{oops\n", "line 2: not valid JSON"),
        (lambda: winoground_examples(wino.parent), wino, no_caption_1 + "\n", "line 1: a Winoground example needs"),
        (lambda: aro_examples(aro_root, "relation"), aro_root / "visual_genome_relation.json", {}, "a JSON list"),
        (
            lambda: aro_examples(aro_root, "relation"),
            aro_root / "visual_genome_relation.json",
            [{"relation_name": "on", "true_caption": "a", "false_caption": "b", "image_path": "x.jpg"}],
            "record 0: an ARO test case needs",
        ),
        (
            lambda: aro_examples(aro_root, "attribution"),
            aro_root / "visual_genome_attribution.json",
            [
                {
                    "bbox_x": 0,
                    "bbox_y": 0,
                    "bbox_w": 1,
                    "bbox_h": 1,
                    "true_caption": "a",
                    "false_caption": "b",
                    "image_path": "x",
                }
            ],
            "two 'attributes'",
        ),
        (
            lambda: sugarcrepe_examples(sugar_root, sugar_images),
            sugar_root / "swap_att.json",
            [],
            "non-empty JSON object",
        ),
        (
            lambda: sugarcrepe_examples(sugar_root, sugar_images),
            sugar_root / "replace_rel.json",
            {"0": {"filename": "a.jpg", "caption": "a"}},
            "record '0': needs a 'filename'",
        ),
    ]


def test_bad_files_raise_a_value_error_naming_the_file(tmp_path):
    for read, file, content, message in _bad_files(tmp_path):
        file.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
        with pytest.raises(ValueError, match=message) as caught:
            read()
        assert str(file) in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(ValueError, match="Unknown Karpathy split 'testing'"):
        karpathy_images(tmp_path / "karpathy" / "dataset_coco.json", ["testing"])
    with pytest.raises(ValueError, match="Unknown ARO subset"):
        aro_examples(tmp_path / "aro", "order")
