"""Zero-shot scoring of the fine-grained benchmark (`mamo_hf.evaluation.finegrained`): strict wins per negative type,
scores equal to a direct ITC and ITM of each pair."""

import pytest
import torch

from mamo_hf import MamoForImageTextRetrieval, MamoForPreTraining
from mamo_hf.data import tiny_config_and_processor
from mamo_hf.data.finegrained import NEGATIVE_TYPES, finegrained_examples
from mamo_hf.evaluation.finegrained import candidate_scores, evaluate_finegrained, finegrained_metrics


def test_metrics_count_strict_wins_per_type_and_overall():
    table = torch.tensor(
        [
            [0.9, 0.1, 0.2, 0.3, 0.4, 0.5],  # beats every negative
            [0.5, 0.6, 0.1, 0.1, 0.1, 0.1],  # loses to the colour swap
            [0.5, 0.5, 0.1, 0.1, 0.1, 0.1],  # a tie counts as wrong
            [0.1, 0.2, 0.2, 0.2, 0.2, 0.2],  # loses to all
        ]
    )
    metrics = finegrained_metrics({"itm": table})
    assert metrics["itm_accuracy"] == 25.0
    assert metrics["itm_colour"] == 25.0 and metrics["itm_shape"] == 75.0 and metrics["itm_count"] == 75.0


@pytest.fixture(scope="module")
def model_and_processor():
    config, processor = tiny_config_and_processor(32, patch_size=8)
    torch.manual_seed(0)
    return MamoForPreTraining(config).eval(), processor


def test_scores_equal_direct_itc_and_itm_of_each_pair(model_and_processor, tmp_path):
    model, processor = model_and_processor
    examples = finegrained_examples(3, seed=1, image_size=32)
    scores = candidate_scores(model, processor, examples, batch_size=2)
    assert scores["itc"].shape == scores["itm"].shape == (3, 1 + len(NEGATIVE_TYPES))
    model.save_pretrained(tmp_path)
    retrieval = MamoForImageTextRetrieval.from_pretrained(tmp_path).eval()
    for row, example in enumerate(examples):
        texts = [example.caption] + [example.negatives[name] for name in NEGATIVE_TYPES]
        inputs = processor(images=[example.image] * len(texts), text=texts, padding=True, return_tensors="pt")
        with torch.no_grad():
            outputs = retrieval(**inputs)
        torch.testing.assert_close(scores["itm"][row], outputs.itm_scores, atol=1e-5, rtol=1e-4)
        direct_itc = (outputs.image_embeds * outputs.text_embeds).sum(-1)
        torch.testing.assert_close(scores["itc"][row], direct_itc, atol=1e-5, rtol=1e-4)
    metrics = evaluate_finegrained(retrieval, processor, examples)
    assert metrics == finegrained_metrics(candidate_scores(model, processor, examples))


def test_a_model_without_itm_head_is_named(model_and_processor):
    model, processor = model_and_processor
    with pytest.raises(ValueError, match="MamoModel has no ITM head"):
        candidate_scores(model.mamo, processor, finegrained_examples(1))
