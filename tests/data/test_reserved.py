"""The demo configurations reserved for the fine-grained benchmark (`mamo_hf.data.reserved`): no training scene, served
item or augmentation of one shows a benchmark pair, its swaps or mirrors."""

import dataclasses
import itertools
import random
import re

import numpy as np

from mamo_hf.data.demo import SceneObject, binding_scene, swap_attribute
from mamo_hf.data.finegrained import finegrained_examples

# The positions a "list" caption names, to their cells.
CELLS = {
    SceneObject("red", "circle", "small", row, column).position: (row, column)
    for row in range(3)
    for column in range(3)
}

LISTED_OBJECT = re.compile(
    r"a (small|large) (\w+) (\w+) at the (" + "|".join(sorted(CELLS, key=len, reverse=True)) + ")"
)


def training_scenes():
    """Scenes the training generators produce over several seeds: plain, minimal pairs (both members), `demo_pairs`."""
    from mamo_hf.data.demo import demo_pairs, demo_scene, minimal_pair_scene

    scenes = [demo_scene(seed, index) for seed in range(3) for index in range(3000)]
    scenes += [minimal_pair_scene(seed, index) for seed in range(2) for index in range(2000)]
    scenes += [scene for _, _, scene in demo_pairs(500, seed=7, image_size=16)]
    return scenes


def test_no_benchmark_pair_nor_any_of_its_swaps_or_mirrors_is_in_a_training_scene():
    from mamo_hf.data.reserved import holds_reserved_pair, reservation_key

    scenes = training_scenes()
    assert not any(holds_reserved_pair(scene) for scene in scenes)
    seen = {reservation_key(list(pair)) for scene in scenes for pair in itertools.combinations(scene, 2)}
    examples = finegrained_examples(300, seed=12345, image_size=16)
    examples += finegrained_examples(100, seed=12345, image_size=16, num_objects=3)
    for example in examples:
        assert reservation_key(list(example.scene[:2])) not in seen
    # The test can fail: benchmark-like scenes drawn without the reservation do occur in training.
    unreserved = [binding_scene(random.Random(index), 2) for index in range(2000)]
    assert any(reservation_key(scene) in seen for scene in unreserved)


def test_reservations_are_the_same_for_a_pair_its_mirror_and_its_swaps():
    from mamo_hf.data.demo import BINDING_ATTRIBUTES
    from mamo_hf.data.reserved import is_evaluation_scene, is_reserved_pair, mirror_scene, reservation_key

    reserved = 0
    for index in range(3000):
        scene = binding_scene(random.Random(index), 2)
        variants = [swap_attribute(scene, kind) for kind in BINDING_ATTRIBUTES]
        variants += [mirror_scene(variant) for variant in [scene, *variants]]
        assert {reservation_key(variant) for variant in variants} == {reservation_key(scene)}
        assert {is_reserved_pair(*variant) for variant in variants} == {is_reserved_pair(*scene)}
        assert is_reserved_pair(*scene) or not is_evaluation_scene(scene)
        reserved += is_reserved_pair(*scene)
        same_colour = [scene[0], dataclasses.replace(scene[1], colour=scene[0].colour)]
        assert not is_reserved_pair(*same_colour)  # never a benchmark pair
    assert 0.1 < reserved / 3000 < 0.3  # a tenth of the keys, and of their mirrors


def listed_scene(text: str) -> list[SceneObject]:
    """The objects that a served "list" caption names (attributes and cell), back from its words."""
    found = LISTED_OBJECT.findall(text)
    assert found and len(found) == text.count(" at the "), text
    return [SceneObject(colour, shape, size, *CELLS[place]) for size, colour, shape, place in found]


def pair_key(first: SceneObject, second: SceneObject) -> tuple:
    """What two objects show up to attribute swaps and the horizontal mirror: the test's own key."""

    def key(cells):
        return (
            tuple(sorted((first.colour, second.colour))),
            tuple(sorted((first.shape, second.shape))),
            tuple(sorted((first.size, second.size))),
            tuple(sorted(cells)),
        )

    cells = [(first.row, first.column), (second.row, second.column)]
    return min(key(cells), key([(row, 2 - column) for row, column in cells]))


def test_no_served_training_item_shows_a_benchmark_pair_with_augmentation_on():
    """Through the real pipeline (`DemoCaptionDataset` + `TrainTransform`, flip p = 0.5), over two epochs of several
    seeds, with and without minimal pairs: the scene each item shows, read back from its "list" caption (which names
    every object's attributes and cell, mirrored with the image), has no two objects that are a benchmark scene, one
    of its attribute-swapped variants, or the mirror of either. The "relation" items of the same seeds show the same
    images, with the relation caption of that scene."""
    from mamo_hf.data import DemoCaptionDataset, TrainTransform, clean_caption
    from mamo_hf.data.demo import relation_caption

    benchmark = {pair_key(*example.scene) for example in finegrained_examples(600, seed=12345, image_size=8)}
    shown, flipped, leaks = 0, 0, []
    for seed, minimal_pairs in itertools.product(range(3), (0.0, 0.5)):
        datasets = [
            DemoCaptionDataset(300, seed, 32, transform=TrainTransform(32), minimal_pairs=minimal_pairs, templates=t)
            for t in (("list",), ("list", "relation"))
        ]
        for epoch, index in itertools.product(range(2), range(300)):
            for dataset in datasets:
                dataset.set_epoch(epoch)
            listed, related = (dataset[index] for dataset in datasets)
            scene = listed_scene(listed["caption"])
            assert np.array_equal(np.asarray(listed["image"]), np.asarray(related["image"]))
            assert related["caption"] in (listed["caption"], clean_caption(relation_caption(scene)))
            shown += 1
            flipped += listed["caption"] != clean_caption(datasets[0].scene_pair(index).caption)
            leaks += [scene for pair in itertools.combinations(scene, 2) if pair_key(*pair) in benchmark]
    assert flipped > shown / 5  # the flip did act (items without "left"/"right" hide theirs)
    assert not leaks, f"{len(leaks)} of {shown} served items show a benchmark pair, e.g. {leaks[0]}"
