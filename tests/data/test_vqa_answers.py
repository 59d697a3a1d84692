"""VQA answers (`mamo_hf.data.vqa_answers`): the official accuracy and its normalisation, soft targets and the answer
vocabulary."""

import pytest
import torch

from mamo_hf.evaluation.vqa import (
    build_answer_vocabulary,
    normalize_answer,
    soft_score,
    soft_scores,
    vqa_accuracy,
    vqa_accuracy_of_predictions,
)


def official_accuracy(prediction: str, answers: list[str]) -> float:
    """The official formula spelled out: the mean over leave-one-annotator-out subsets of min(#matches / 3, 1)."""
    prediction = normalize_answer(prediction)
    answers = [normalize_answer(answer) for answer in answers]
    subsets = [answers[:left_out] + answers[left_out + 1 :] for left_out in range(len(answers))]
    return sum(min(subset.count(prediction) / 3, 1.0) for subset in subsets) / len(subsets)


@pytest.mark.parametrize(("matches", "expected"), [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)])
def test_accuracy_of_ten_annotators(matches, expected):
    answers = ["dog"] * matches + ["cat"] * (10 - matches)
    assert vqa_accuracy("dog", answers) == pytest.approx(expected)
    assert vqa_accuracy("dog", answers) == pytest.approx(official_accuracy("dog", answers))


@pytest.mark.parametrize("num_annotators", range(2, 13))
def test_soft_score_is_the_official_formula_for_any_number_of_annotators(num_annotators):
    for count in range(num_annotators + 1):
        answers = ["yes"] * count + ["no"] * (num_annotators - count)
        assert soft_score(count, num_annotators) == pytest.approx(official_accuracy("yes", answers))


def test_single_annotator_counts_as_unanimous():
    assert soft_score(1, 1) == 1.0 and soft_score(0, 1) == 0.0
    assert vqa_accuracy("Circle.", ["circle"]) == 1.0
    assert vqa_accuracy("square", ["circle"]) == 0.0


def test_soft_score_rejects_impossible_counts():
    for count, num_annotators in [(-1, 10), (11, 10), (0, 0)]:
        with pytest.raises(ValueError):
            soft_score(count, num_annotators)
    with pytest.raises(ValueError, match="at least one"):
        vqa_accuracy("yes", [])


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("Two", "2"),
        ("a dog", "dog"),
        ("The Dog", "dog"),
        ("yes.", "yes"),
        ("Yes!", "yes"),
        ("  no\t", "no"),
        ("dont", "don't"),
        ("shouldntve", "shouldn't've"),
        ("t-shirt", "t shirt"),
        ("black and white", "black and white"),
        ("2,500", "2500"),
        ("1.5", "1.5"),
        ("red , blue", "red blue"),
        ("none", "0"),
        ("an apple", "apple"),
    ],
)
def test_normalize_answer(raw, normalised):
    assert normalize_answer(raw) == normalised


def test_accuracy_normalises_both_sides():
    answers = ["two"] * 3 + ["2"] + ["3"] * 6
    assert vqa_accuracy("2", answers) == pytest.approx(1.0)
    assert vqa_accuracy("a dog", ["dog"] * 2 + ["cat"] * 8) == pytest.approx(0.6)
    assert vqa_accuracy_of_predictions(["yes.", "no"], [["yes"] * 10, ["yes"] * 10]) == pytest.approx(50.0)
    with pytest.raises(ValueError):
        vqa_accuracy_of_predictions(["yes"], [])


def test_soft_scores():
    label2id = {"yes": 0, "no": 1, "2": 2}
    labels = soft_scores([["yes"] * 9 + ["no"], ["Two", "2", "two", "3"] + ["zebra"] * 6, []], label2id)
    expected = torch.tensor([[1.0, 0.3, 0.0], [0.0, 0.0, 0.9], [0.0, 0.0, 0.0]])
    assert labels.dtype == torch.float32 and labels.shape == (3, 3)
    assert torch.allclose(labels, expected)


def test_answer_vocabulary_by_frequency_with_alphabetical_ties():
    answer_lists = [["yes"] * 10, ["Yes", "no"], ["two", "2"], ["no"], ["blue"], ["red"]]
    id2label, label2id = build_answer_vocabulary(answer_lists, max_answers=4)
    # "no" and "yes" in 2 questions each ("Yes" is "yes"); "2", "blue" and "red" in one ("two" is "2"), in that order.
    assert id2label == {0: "no", 1: "yes", 2: "2", 3: "blue"}
    assert label2id == {"no": 0, "yes": 1, "2": 2, "blue": 3}
    assert build_answer_vocabulary(answer_lists[::-1], max_answers=4) == (id2label, label2id)
