"""The built-in demo data (`mamo_hf.data.demo`): deterministic scenes, datasets and files, binding scenes and minimal
pairs."""

import numpy as np
import pytest
from helpers import captions_and_ids, pixels

from mamo_hf.data import CaptionDataset, DemoCaptionDataset, TrainTransform, write_demo_dataset
from mamo_hf.data.demo import binding_scene, swap_attribute
from mamo_hf.data.transforms import mirror_caption


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


def test_scene_constraints_and_swaps():
    import random

    scene = binding_scene(random.Random(0), num_objects=3)
    first, second = scene[:2]
    assert first.colour != second.colour and first.shape != second.shape and first.size != second.size
    assert len({(o.row, o.column) for o in scene}) == 3
    swapped = swap_attribute(scene, "position")
    assert (swapped[0].row, swapped[0].column) == (second.row, second.column) and swapped[0].colour == first.colour
    with pytest.raises(ValueError, match="num_objects"):
        binding_scene(random.Random(0), num_objects=4)


def test_a_fraction_of_minimal_pairs_mixes_pairs_and_independent_scenes():
    from mamo_hf.data.demo import minimal_pair_scene

    def is_minimal_pair(pair):
        first, second = (minimal_pair_scene(0, 2 * pair + member, fraction=0.5) for member in (0, 1))
        return sorted(o.colour for o in first) == sorted(o.colour for o in second) and first != second

    share = sum(is_minimal_pair(pair) for pair in range(400)) / 400
    assert 0.4 < share < 0.6
    assert minimal_pair_scene(0, 7, fraction=0.5) == minimal_pair_scene(0, 7, fraction=0.5)
