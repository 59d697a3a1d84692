"""The dense probe: per-patch labels from the demo generator's geometry, the linear probe, mIoU, and the held-out
scenes of the instruments (dense, grounding, retrieval) disjoint from training scenes by construction."""

import numpy
import pytest
import torch

from mamo_hf import MamoForPreTraining
from mamo_hf.data import tiny_config_and_processor
from mamo_hf.data.demo import COLOURS, SHAPES, SceneObject, draw_scene
from mamo_hf.data.dense import DENSE_TASKS, dense_probe_scenes, object_map, patch_labels
from mamo_hf.data.grounding import generated_grounding_samples, grounding_scene
from mamo_hf.data.reserved import is_evaluation_scene
from mamo_hf.data.retrieval import demo_retrieval_split
from mamo_hf.evaluation.dense_probe import dense_probe, fit_linear_probe, patch_features, segmentation_metrics

RED, BLUE = 1 + list(COLOURS).index("red"), 1 + list(COLOURS).index("blue")
SQUARE, CIRCLE = 1 + SHAPES.index("square"), 1 + SHAPES.index("circle")


# --------------------------------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------------------------
# Disjoint scenes
# --------------------------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------------------------
# Probe and metrics
# --------------------------------------------------------------------------------------------------------------------


def test_miou_and_accuracy_of_a_hand_example():
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    predicted = torch.tensor([0, 0, 1, 1, 2, 2])
    metrics = segmentation_metrics(predicted, labels, num_classes=4)
    # Class 0: 2 / 3; class 1: 1 / 3 (one of each side wrong); class 2: 1 / 2; class 3 absent: left out.
    assert metrics["iou"][:3] == pytest.approx([200 / 3, 100 / 3, 50.0]) and metrics["iou"][3] is None
    assert metrics["miou"] == pytest.approx((200 / 3 + 100 / 3 + 50) / 3)
    assert metrics["accuracy"] == pytest.approx(400 / 6)


def test_the_probe_reads_labels_that_the_features_encode_and_not_noise():
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 5, (600,), generator=generator)
    one_hot = torch.nn.functional.one_hot(labels, 5).float() * 3 + 7 + torch.randn(600, 5, generator=generator) * 0.1
    noise = torch.randn(600, 16, generator=generator)
    fit, test = slice(0, 400), slice(400, 600)
    readable = fit_linear_probe(torch.cat([one_hot, noise], 1)[fit], labels[fit], 5)
    assert (
        segmentation_metrics(readable.predict(torch.cat([one_hot, noise], 1)[test]), labels[test], 5)["accuracy"]
        == 100
    )
    blind = fit_linear_probe(noise[fit], labels[fit], 5)
    accuracy = segmentation_metrics(blind.predict(noise[test]), labels[test], 5)["accuracy"]
    assert 5 < accuracy < 35  # chance is 20 %; 200 test samples: 3 standard errors either side


def test_the_probe_is_deterministic_and_standardised_on_the_fit_set_only():
    generator = torch.Generator().manual_seed(1)
    features, labels = (
        torch.randn(300, 8, generator=generator) * 5 + 2,
        torch.randint(0, 3, (300,), generator=generator),
    )
    first, second = fit_linear_probe(features, labels, 3), fit_linear_probe(features, labels, 3)
    assert torch.equal(first.weight, second.weight) and torch.equal(first.bias, second.bias)
    assert torch.allclose(first.mean, features.double().mean(0)) and torch.allclose(
        first.scale, features.double().std(0, unbiased=False)
    )


def test_dense_probe_on_a_tiny_model():
    torch.manual_seed(0)
    config, processor = tiny_config_and_processor(32, 8)
    model = MamoForPreTraining(config).train()
    features = patch_features(model, processor, [draw_scene([], 32)] * 3)
    assert features.shape == (3, 16, config.vision_config.hidden_size) and model.training
    results = dense_probe(model, processor, dense_probe_scenes(12, 0, False), dense_probe_scenes(6, 0, True))
    assert (results["fit_patches"], results["test_patches"]) == (12 * 16, 6 * 16)
    for task, classes in DENSE_TASKS.items():
        assert 0 <= results[task]["miou"] <= 100 and 0 <= results[task]["accuracy"] <= 100
        assert len(results[task]["iou"]) == len(classes) == len(results[task]["classes"])
    assert dense_probe(model, processor, dense_probe_scenes(12, 0, False), dense_probe_scenes(6, 0, True)) == results
