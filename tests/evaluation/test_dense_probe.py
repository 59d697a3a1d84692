"""The dense probe (`mamo_hf.evaluation.dense_probe`): the linear probe, mIoU and accuracy, on hand examples, on
features that encode the labels, and on a tiny model."""

import pytest
import torch

from mamo_hf import MamoForPreTraining
from mamo_hf.data import tiny_config_and_processor
from mamo_hf.data.demo import draw_scene
from mamo_hf.data.dense import DENSE_TASKS, dense_probe_scenes
from mamo_hf.evaluation.dense_probe import dense_probe, fit_linear_probe, patch_features, segmentation_metrics


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
