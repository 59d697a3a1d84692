"""NLVR2 data (`mamo_hf.data.nlvr2`): the NLVR2 JSON reader, the generated count-comparison task and the collator."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from mamo_hf import MamoImageProcessorPil, MamoProcessor
from mamo_hf.data.demo import COLOURS, demo_tokenizer
from mamo_hf.data.nlvr2 import CountComparisonDataset, NLVR2Collator, NLVR2Dataset


def count_objects(image, rgb) -> int:
    """Connected regions of exactly `rgb` (objects sit in distinct grid cells, so they never touch)."""
    pixels = np.array(image)
    remaining = (pixels == np.array(rgb)).all(axis=-1)
    count = 0
    while remaining.any():
        count += 1
        stack = [tuple(np.argwhere(remaining)[0])]
        while stack:
            row, column = stack.pop()
            if 0 <= row < remaining.shape[0] and 0 <= column < remaining.shape[1] and remaining[row, column]:
                remaining[row, column] = False
                stack += [(row + 1, column), (row - 1, column), (row, column + 1), (row, column - 1)]
    return count


def test_generated_task_is_balanced_deterministic_and_labelled_by_the_counts():
    dataset = CountComparisonDataset(200, seed=3, image_size=32)
    labels = [dataset[index]["label"] for index in range(200)]
    assert 80 <= sum(labels) <= 120
    first, again = dataset[5], CountComparisonDataset(10, seed=3, image_size=32)[5]
    assert first["sentence"] == again["sentence"] and first["label"] == again["label"]
    assert list(first["images"][0].getdata()) == list(again["images"][0].getdata())
    for index in range(40):
        item = dataset[index]
        words = item["sentence"].split()
        comparison, colour = words[4], words[5]
        left, right = (count_objects(image, COLOURS[colour]) for image in item["images"])
        assert left != right
        assert item["label"] == int(left > right if comparison == "more" else left < right), item["sentence"]


def test_nlvr2_json_reader_and_collator(tmp_path):
    for name, colour in (("a.png", "red"), ("b.png", "blue")):
        Image.new("RGB", (40, 30), colour).save(tmp_path / name)
    records = [
        {"images": ["a.png", "b.png"], "sentence": "the left image is red", "label": "True"},
        {"images": ["b.png", "a.png"], "sentence": "the left image is red", "label": "False"},
    ]
    (tmp_path / "nlvr.json").write_text(json.dumps(records))
    dataset = NLVR2Dataset(tmp_path / "nlvr.json")
    assert len(dataset) == 2 and dataset[0]["label"] == 1 and dataset[1]["label"] == 0
    assert dataset[1]["images"][0].getpixel((0, 0)) == (0, 0, 255)
    processor = MamoProcessor(MamoImageProcessorPil(size={"height": 32, "width": 32}), demo_tokenizer())
    batch = NLVR2Collator(processor)([dataset[0], dataset[1]])
    assert batch["pixel_values"].shape == (2, 2, 3, 32, 32) and batch["labels"].tolist() == [1, 0]
    torch.testing.assert_close(batch["pixel_values"][0, 0], batch["pixel_values"][1, 1])
    (tmp_path / "bad.json").write_text(json.dumps([{"images": ["a.png"], "sentence": "x", "label": "True"}]))
    with pytest.raises(ValueError, match="bad.json, record 0.*two image paths"):
        NLVR2Dataset(tmp_path / "bad.json")
