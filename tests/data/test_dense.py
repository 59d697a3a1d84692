"""Per-patch labels of demo scenes (`mamo_hf.data.dense`) from the generator's geometry, and the held-out scenes of the
instruments (dense, grounding, retrieval) disjoint from training scenes by construction."""

import numpy
import pytest
import torch

from mamo_hf.data.demo import COLOURS, SHAPES, SceneObject, draw_scene
from mamo_hf.data.dense import DENSE_TASKS, dense_probe_scenes, object_map, patch_labels
from mamo_hf.data.grounding import generated_grounding_samples, grounding_scene
from mamo_hf.data.reserved import is_evaluation_scene
from mamo_hf.data.retrieval import demo_retrieval_split

RED, BLUE = 1 + list(COLOURS).index("red"), 1 + list(COLOURS).index("blue")

SQUARE, CIRCLE = 1 + SHAPES.index("square"), 1 + SHAPES.index("circle")


def test_labels_follow_the_geometry_of_a_hand_checked_scene():
    """64 px, 16 px patches. A large red square in the top-left cell spans pixels 1.7 to 19.6 on both axes: all of
    patch (0, 0), a 3.6 px strip (20 %) of patches (0, 1) and (1, 0), a 3.6 px corner (5 %) of patch (1, 1). A large
    blue circle in the centre cell (radius 9 px around (32, 32), the corner of the four middle patches) covers about
    a quarter of each of them."""
    scene = [SceneObject("red", "square", "large", 0, 0), SceneObject("blue", "circle", "large", 1, 1)]
    labels = patch_labels(scene, image_size=64, patch_size=16)
    expected_colour = torch.tensor([[RED, RED, 0, 0], [RED, BLUE, BLUE, 0], [0, BLUE, BLUE, 0], [0, 0, 0, 0]])
    assert torch.equal(labels["colour"], expected_colour)
    expected_shape = torch.where(expected_colour == RED, SQUARE, torch.where(expected_colour == BLUE, CIRCLE, 0))
    assert torch.equal(labels["shape"], expected_shape)
    # Under a majority rule only the patch the square fills is an object patch: the circle's quarters are not.
    strict = patch_labels(scene, image_size=64, patch_size=16, min_coverage=0.5)["colour"]
    assert torch.equal(strict, torch.where(torch.arange(16).view(4, 4) == 0, RED, 0))


def test_the_object_map_is_the_drawn_image():
    scene = dense_probe_scenes(1, seed=3, reserved=True)[0]
    owner = object_map(scene, 64)
    pixels = torch.from_numpy(numpy.array(draw_scene(scene, 64)))
    for index, scene_object in enumerate(scene):
        assert (pixels[owner == index] == torch.tensor(COLOURS[scene_object.colour])).all()
    assert (pixels[owner == -1] == torch.tensor((245, 245, 240))).all()


def test_labels_of_an_empty_scene_are_background_and_bad_sizes_fail():
    labels = patch_labels([], image_size=32, patch_size=8)
    assert set(labels) == set(DENSE_TASKS) and all(int(grid.abs().sum()) == 0 for grid in labels.values())
    with pytest.raises(ValueError, match="multiple"):
        patch_labels([], image_size=30, patch_size=8)
    with pytest.raises(ValueError, match="min_coverage"):
        patch_labels([], min_coverage=0)


def test_held_out_scenes_are_reserved_and_fit_and_fine_tuning_scenes_never_are():
    assert all(is_evaluation_scene(scene) for scene in dense_probe_scenes(30, seed=0, reserved=True))
    assert not any(is_evaluation_scene(scene) for scene in dense_probe_scenes(30, seed=0, reserved=False))
    assert all(is_evaluation_scene(grounding_scene(0, index, reserved=True).objects) for index in range(30))
    assert not any(is_evaluation_scene(grounding_scene(0, index, reserved=False).objects) for index in range(30))
    split = demo_retrieval_split(10, seed=0, image_size=32, reserved=True)
    assert len(split.images) == 10 and len(split.texts) == 20
    # Without `reserved`, the grounding set is the one it always was (`examples/grounding.py` relies on it).
    assert [s.text for s in generated_grounding_samples(5, seed=1, image_size=32)] == [
        expression for index in range(5) for expression in grounding_scene(1, index).expressions
    ]
    with pytest.raises(ValueError, match="2 or 3"):
        dense_probe_scenes(1, seed=0, reserved=True, max_objects=1)
