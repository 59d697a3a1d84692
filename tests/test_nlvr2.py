"""NLVR2: the pair classifier, the NLVR2 JSON reader, the generated count-comparison task and the collator."""

import json

import numpy as np
import pytest
import torch
from helpers import random_pairs, tiny_config
from PIL import Image
from transformers import Trainer, TrainingArguments

from mamo_hf import MamoForVisualReasoning, MamoImageProcessorPil, MamoProcessor
from mamo_hf.data import tiny_config_and_processor
from mamo_hf.data.demo import COLOURS, demo_tokenizer
from mamo_hf.data.nlvr2 import CountComparisonDataset, NLVR2Collator, NLVR2Dataset


def pair_batch(config, batch_size=4):
    batch = random_pairs(config, batch_size=batch_size)
    generator = torch.Generator().manual_seed(7)
    batch["pixel_values"] = torch.randn(batch_size, 2, 3, 32, 32, generator=generator)
    return batch


def test_forward_backward_with_and_without_labels():
    torch.manual_seed(0)
    model = MamoForVisualReasoning(tiny_config())
    batch = pair_batch(model.config)
    outputs = model(**batch)
    assert outputs.loss is None and outputs.logits.shape == (4, 2)
    outputs = model(**batch, labels=torch.tensor([0, 1, 1, 0]))
    expected = torch.nn.functional.cross_entropy(outputs.logits, torch.tensor([0, 1, 1, 0]))
    torch.testing.assert_close(outputs.loss, expected)
    outputs.loss.backward()
    assert model.nlvr_head.classifier.weight.grad is not None
    assert model.mamo.image_encoder.embeddings.patch_embeddings.weight.grad is not None


def test_the_statement_is_encoded_once_and_each_image_fused_with_it():
    torch.manual_seed(0)
    model = MamoForVisualReasoning(tiny_config()).eval()
    batch = pair_batch(model.config, batch_size=3)
    shapes = {}

    def record(name):
        def hook(module, args, output):
            shapes[name] = output[0].shape

        return hook

    model.mamo.text_encoder.register_forward_hook(record("text"))
    model.mamo.fusion_encoder.register_forward_hook(record("fusion"))
    with torch.no_grad():
        logits = model(**batch).logits
    assert shapes["text"][0] == 3 and shapes["fusion"][0] == 6
    # Swapping the two images changes the answer's inputs: the classifier sees [left ; right], in order.
    swapped = {**batch, "pixel_values": batch["pixel_values"].flip(1)}
    with torch.no_grad():
        assert not torch.allclose(model(**swapped).logits, logits)


@pytest.mark.parametrize("shape", [(4, 3, 32, 32), (4, 3, 3, 32, 32), (4, 1, 3, 32, 32)])
def test_pixel_values_must_be_pairs(shape):
    model = MamoForVisualReasoning(tiny_config())
    batch = pair_batch(model.config)
    with pytest.raises(ValueError, match="pair of images"):
        model(**{**batch, "pixel_values": torch.randn(*shape)})


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


def test_trainer_steps_and_save_load(tmp_path):
    config, processor = tiny_config_and_processor()
    torch.manual_seed(0)
    model = MamoForVisualReasoning(config)
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        max_steps=3,
        learning_rate=1e-3,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        remove_unused_columns=False,
    )
    before = model.nlvr_head.classifier.weight.clone()
    Trainer(
        model=model,
        args=args,
        train_dataset=CountComparisonDataset(16, image_size=32),
        data_collator=NLVR2Collator(processor),
    ).train()
    assert not torch.equal(before, model.nlvr_head.classifier.weight)
    model.save_pretrained(tmp_path / "saved")
    reloaded = MamoForVisualReasoning.from_pretrained(tmp_path / "saved").eval()
    batch = NLVR2Collator(processor)([CountComparisonDataset(2, image_size=32)[i] for i in range(2)])
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, model.eval()(**batch).logits)
