"""The compositional benchmarks on disk (`mamo_hf.data.compositional`): Winoground, ARO and SugarCrepe read. The files
are tiny ones in the published formats (`helpers`): the same file names, keys, nesting and value types, with a few
records and generated images."""

import json
from pathlib import Path

import pytest
from helpers import STANDARD_COLOURS as COLOURS
from helpers import WINOGROUND_CAPTIONS, aro, assert_bad_files_are_named, has_colour, sugarcrepe, winoground

from mamo_hf.data.compositional import aro_examples, sugarcrepe_examples, winoground_examples


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
    wino = winoground(tmp_path / "winoground") / "examples.jsonl"
    aro_root = aro(tmp_path / "aro")
    sugar_root, sugar_images = sugarcrepe(tmp_path / "sugarcrepe")
    good_line = wino.read_text().splitlines()[0]
    no_caption_1 = json.dumps({key: value for key, value in json.loads(good_line).items() if key != "caption_1"})
    return [
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
    assert_bad_files_are_named(_bad_files(tmp_path))
    with pytest.raises(ValueError, match="Unknown ARO subset"):
        aro_examples(tmp_path / "aro", "order")
