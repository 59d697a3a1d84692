"""Captions and augmentation (`mamo_hf.data.transforms`): `clean_caption`, `mirror_caption` and `TrainTransform`, whose
flip agrees with the caption and whose crops keep a caption that says where things are true."""

import random
import re

import pytest
from helpers import pixels, two_colour_image

from mamo_hf.data import DemoCaptionDataset, TrainTransform, clean_caption
from mamo_hf.data.transforms import mirror_caption


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


def test_mirror_caption_mirrors_every_left_and_right_of_the_demo_captions():
    dataset = DemoCaptionDataset(300, seed=0, templates=("list", "relation"))
    swapped = {"left": "right", "right": "left"}
    for index in range(300):
        caption = dataset[index]["caption"]
        assert mirror_caption(caption) == re.sub(r"\b(left|right)\b", lambda match: swapped[match[0]], caption)


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


def test_caption_safe_crops_keep_every_object_where_its_caption_puts_it():
    from mamo_hf.data import TrainTransform
    from mamo_hf.data.demo import COLOURS, caption, demo_scene, draw_scene

    def objects_in_place(transform, seed):
        scene = demo_scene(seed, 0)
        image, text = transform(draw_scene(scene, 96), caption(scene), random.Random(seed))
        assert text == caption(scene)  # no flip here
        cell = image.width / 3
        centres = [image.getpixel((int((obj.column + 0.5) * cell), int((obj.row + 0.5) * cell))) for obj in scene]
        return all(
            max(abs(a - b) for a, b in zip(centre, COLOURS[obj.colour])) < 40 for centre, obj in zip(centres, scene)
        )

    safe = TrainTransform(96, flip_probability=0.0)
    unsafe = TrainTransform(96, flip_probability=0.0, caption_safe=False)
    assert all(objects_in_place(safe, seed) for seed in range(60))
    assert not all(objects_in_place(unsafe, seed) for seed in range(60))
    # A caption that names no place or size keeps the full crop range.
    boxes = [safe.crop_box(100, 100, random.Random(seed), mild=False) for seed in range(50)]
    assert min((right - left) * (bottom - top) for left, top, right, bottom in boxes) < 0.7 * 100 * 100
    scene = demo_scene(0, 0)
    mirrored = TrainTransform(96, flip_probability=1.0)(draw_scene(scene, 96), "a dog left of a cat", random.Random(0))
    assert mirrored[1] == "a dog right of a cat"
