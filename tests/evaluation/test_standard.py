"""Scores of the standard benchmarks (`mamo_hf.evaluation.standard`): Winoground's text, image and group scores, choice
accuracies, and a model's scores equal to a direct forward of each pair."""

import json

import pytest
import torch
from helpers import aro, retrieval_model_and_processor, winoground

from mamo_hf.data.compositional import aro_examples, winoground_examples
from mamo_hf.data.transforms import clean_caption
from mamo_hf.evaluation.standard import (
    ItemScores,
    choice_metrics,
    choice_outcomes,
    choice_scores,
    winoground_metrics,
    winoground_outcomes,
    winoground_scores,
)


def test_winoground_text_image_and_group_scores_on_hand_made_matrices():
    # Rows are captions, columns images: table[e, c, i] = s(caption c, image i).
    tables = torch.tensor(
        [
            [[0.9, 0.1], [0.2, 0.8]],  # diagonal wins everywhere: text, image, group
            [[0.9, 0.8], [0.5, 0.6]],  # image 1 prefers caption 0 (0.8 > 0.6): image only (each caption's row)
            [[0.9, 0.1], [0.6, 0.5]],  # caption 1 prefers image 0 (0.6 > 0.5): text only (each image's column)
            [[0.5, 0.5], [0.1, 0.9]],  # a tie between caption 0's images: text, not image
            [[0.1, 0.9], [0.8, 0.2]],  # everything swapped: nothing
        ]
    )
    outcomes = winoground_outcomes(tables)
    assert outcomes["text"].tolist() == [True, False, True, True, False]
    assert outcomes["image"].tolist() == [True, True, False, False, False]
    assert outcomes["group"].tolist() == [True, False, False, False, False]
    metrics = winoground_metrics(ItemScores({"itm": tables}, ["Object", "Object", "Relation", "Both", "Object"]))
    assert metrics["itm"]["text"] == 60.0 and metrics["itm"]["image"] == 40.0 and metrics["itm"]["group"] == 20.0
    assert metrics["itm"]["by_tag"]["Object"] == pytest.approx({"text": 100 / 3, "image": 200 / 3, "group": 100 / 3})
    assert metrics["count"] == 5 and metrics["tag_counts"] == {"Both": 1, "Object": 3, "Relation": 1}


def test_winoground_chance_levels_are_a_quarter_a_quarter_and_a_sixth():
    random = torch.rand(60_000, 2, 2, generator=torch.Generator().manual_seed(0))
    metrics = winoground_metrics(ItemScores({"itc": random}, ["Object"] * 60_000))["itc"]
    assert metrics["text"] == pytest.approx(25.0, abs=0.6) and metrics["image"] == pytest.approx(25.0, abs=0.6)
    assert metrics["group"] == pytest.approx(100 / 6, abs=0.6)


def test_choice_accuracy_counts_strict_wins_per_group_and_macro():
    table = torch.tensor([[0.2, 0.9], [0.7, 0.3], [0.5, 0.5], [0.4, 0.6], [0.8, 0.1]])
    answers = torch.tensor([1, 1, 1, 0, 0])  # right, wrong, tie (wrong), wrong, right
    assert choice_outcomes(table, answers).tolist() == [True, False, False, False, True]
    scores = ItemScores({"itc": table, "itm": table.flip(1)}, ["on", "on", "on", "under", "near"], answers)
    metrics = choice_metrics(scores)
    assert metrics["itc"]["accuracy"] == 40.0 and metrics["itc"]["groups"] == pytest.approx(
        {"near": 100.0, "on": 100 / 3, "under": 0.0}
    )
    assert metrics["itc"]["macro_accuracy"] == pytest.approx((100 + 100 / 3 + 0) / 3)
    assert metrics["itm"]["accuracy"] == 40.0  # flipped scores: items 2 (a tie stays wrong) and 4 right
    assert metrics["count"] == 5 and metrics["group_counts"] == {"near": 1, "on": 3, "under": 1}
    kept = choice_metrics(scores, min_group_size=2)
    assert kept["macro_groups"] == 1 and kept["itc"]["macro_accuracy"] == pytest.approx(100 / 3)
    assert choice_metrics(scores, excluded_groups=["on"])["itc"]["macro_accuracy"] == 50.0


def test_a_macro_accuracy_without_a_qualifying_group_is_none_and_the_metrics_are_strict_json():
    """ARO's VG-Attribution keeps the attribute pairs of 25 cases or more: on fewer cases no group qualifies, and the
    macro accuracy is None (it was NaN, which `json.dumps` wrote as `NaN`, not JSON)."""
    table = torch.tensor([[0.2, 0.9], [0.7, 0.3], [0.4, 0.6]])
    scores = ItemScores({"itc": table}, ["red_large", "red_large", "green_small"], torch.tensor([1, 1, 1]))
    metrics = choice_metrics(scores, min_group_size=25)
    assert metrics["macro_groups"] == 0 and metrics["itc"]["macro_accuracy"] is None
    assert metrics["itc"]["accuracy"] == pytest.approx(200 / 3)
    json.loads(json.dumps(metrics, allow_nan=False), parse_constant=reject_constant)
    every_group_excluded = choice_metrics(scores, excluded_groups=["red_large", "green_small"])
    assert every_group_excluded["itc"]["macro_accuracy"] is None


def reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


@pytest.fixture(scope="module")
def model_and_processor():
    return retrieval_model_and_processor()


def direct_scores(model, processor, images, texts) -> dict[str, torch.Tensor]:
    """ITC and ITM of the pairs `(images[n], texts[n])`, by one forward of the retrieval model."""
    inputs = processor(images=images, text=[clean_caption(text) for text in texts], padding=True, return_tensors="pt")
    with torch.no_grad():
        outputs = model(**inputs)
    return {"itc": (outputs.image_embeds * outputs.text_embeds).sum(-1), "itm": outputs.itm_scores}


def test_scores_equal_a_direct_forward_of_each_pair_across_chunks(model_and_processor, tmp_path):
    model, processor = model_and_processor
    items = aro_examples(aro(tmp_path / "aro"), "relation")
    scores = choice_scores(model, processor, items, batch_size=2, chunk_size=2)
    assert scores.groups == ["on", "on", "left of"] and scores.answers.tolist() == [1, 1, 1]
    for row, item in enumerate(items):
        expected = direct_scores(model, processor, [item.image] * 2, list(item.captions))
        for kind in ("itc", "itm"):
            torch.testing.assert_close(scores.scores[kind][row], expected[kind], atol=1e-5, rtol=1e-4)

    examples = winoground_examples(winoground(tmp_path / "winoground"))
    tables = winoground_scores(model, processor, examples, batch_size=3, chunk_size=2)
    assert tables.scores["itm"].shape == (3, 2, 2) and tables.groups == ["Object", "Object", "Relation"]
    for row, example in enumerate(examples):
        images = [example.images[image] for caption in (0, 1) for image in (0, 1)]
        texts = [example.captions[caption] for caption in (0, 1) for image in (0, 1)]
        expected = direct_scores(model, processor, images, texts)
        for kind in ("itc", "itm"):
            torch.testing.assert_close(tables.scores[kind][row], expected[kind].view(2, 2), atol=1e-5, rtol=1e-4)
    # A bare MamoModel has no ITM head: ITC only.
    assert set(choice_scores(model.mamo, processor, items).scores) == {"itc"}
