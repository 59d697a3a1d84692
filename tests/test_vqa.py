"""VQA: the official accuracy and its normalisation, soft targets, the answer vocabulary, the data loaders and the
collator, and `MamoForQuestionAnswering` (forward, backward, `top_answers`, `Trainer`, save and load)."""

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import AutoModelForVisualQuestionAnswering, Trainer, TrainingArguments

import mamo_hf  # noqa: F401  (registers MAMO with the Auto classes)
from mamo_hf import MamoConfig, MamoForQuestionAnswering, MamoImageProcessorPil, MamoProcessor
from mamo_hf.configuration_mamo import special_token_ids
from mamo_hf.data.vqa import VQACollator, VQADataset, easy_vqa_dataset, tokenizer_from_texts
from mamo_hf.evaluation.vqa import (
    build_answer_vocabulary,
    normalize_answer,
    soft_score,
    soft_scores,
    vqa_accuracy,
    vqa_accuracy_of_predictions,
)

IMAGE_SIZE = 32


def official_accuracy(prediction: str, answers: list[str]) -> float:
    """The official formula spelled out: the mean over leave-one-annotator-out subsets of min(#matches / 3, 1)."""
    prediction = normalize_answer(prediction)
    answers = [normalize_answer(answer) for answer in answers]
    subsets = [answers[:left_out] + answers[left_out + 1 :] for left_out in range(len(answers))]
    return sum(min(subset.count(prediction) / 3, 1.0) for subset in subsets) / len(subsets)


# ---------------------------------------------------------------------------------------------------------------
# Accuracy, normalisation, soft scores, vocabulary
# ---------------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------------
# Data: VQA v2 files, easy-VQA, collator
# ---------------------------------------------------------------------------------------------------------------


def write_image(path, colour=(200, 30, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L" if isinstance(colour, int) else "RGB", (40, 30), colour).save(path)


def test_albef_json(tmp_path):
    write_image(tmp_path / "val2014" / "a.png")
    write_image(tmp_path / "val2014" / "b.png", colour=128)  # gray images come out as RGB
    records = [
        {"question_id": 7, "question": "What colour?", "image": "val2014/a.png", "answer": ["red", "red", "pink"]},
        {"question_id": 8, "question": "Is it gray?", "image": "val2014/b.png", "answer": "yes"},
        {"question_id": 9, "question": "Test question?", "image": "val2014/b.png"},
    ]
    (tmp_path / "vqa.json").write_text(json.dumps(records))
    dataset = VQADataset.from_json(tmp_path / "vqa.json", image_root=tmp_path)
    assert len(dataset) == 3
    item = dataset[0]
    assert (
        item["question"] == "What colour?" and item["answers"] == ["red", "red", "pink"] and item["question_id"] == 7
    )
    assert item["image"].mode == "RGB" and item["image"].size == (40, 30)
    assert dataset[1]["answers"] == ["yes"] and dataset[1]["image"].mode == "RGB"
    assert dataset[2]["answers"] == []


def test_albef_json_image_paths_start_from_the_files_folder_by_default(tmp_path, monkeypatch):
    """As for every reader of the package (README: "default: the annotation file's folder"), not from the working
    directory; records of files in two folders can be joined."""
    for folder, colour in (("train", (255, 0, 0)), ("extra", (0, 0, 255))):
        write_image(tmp_path / folder / "images" / "a.png", colour=colour)
        record = {"question_id": folder, "question": "What colour?", "image": "images/a.png", "answer": "x"}
        (tmp_path / folder / "vqa.json").write_text(json.dumps([record]))
    monkeypatch.chdir(tmp_path / "train" / "images")  # a working directory where "images/a.png" does not exist
    dataset = VQADataset.from_json(tmp_path / "train" / "vqa.json")
    dataset.records += VQADataset.from_json(Path("../../extra/vqa.json")).records
    assert [dataset[index]["image"].getpixel((0, 0)) for index in range(2)] == [(255, 0, 0), (0, 0, 255)]


def test_official_questions_and_annotations(tmp_path):
    for image_id in (42, 1234567):
        write_image(tmp_path / f"COCO_val2014_{image_id:012d}.jpg")
    questions = {"questions": [{"question_id": 1, "image_id": 42, "question": "q1?"}]}
    questions["questions"].append({"question_id": 2, "image_id": 1234567, "question": "q2?"})
    annotations = {"annotations": [{"question_id": q, "answers": [{"answer": f"a{q}"}] * 10} for q in (1, 2)]}
    (tmp_path / "questions.json").write_text(json.dumps(questions))
    (tmp_path / "annotations.json").write_text(json.dumps(annotations))
    dataset = VQADataset.from_official(
        tmp_path / "questions.json", tmp_path / "annotations.json", image_root=tmp_path, split="val"
    )
    assert [dataset[i]["answers"] for i in range(2)] == [["a1"] * 10, ["a2"] * 10]
    assert dataset.records[1]["image"] == "COCO_val2014_000001234567.jpg"
    test_dev = VQADataset.from_official(tmp_path / "questions.json", image_root=tmp_path, split="val")
    assert test_dev[0]["answers"] == [] and test_dev[0]["question"] == "q1?"


def test_easy_vqa():
    train, test = easy_vqa_dataset("train"), easy_vqa_dataset("test")
    assert (len(train), len(test)) == (38575, 9673)
    item = test[5]
    assert set(item) == {"image", "question", "answers", "question_id"}
    assert item["image"].mode == "RGB" and item["image"].size == (64, 64) and len(item["answers"]) == 1
    with pytest.raises(ValueError, match="splits"):
        easy_vqa_dataset("val")


@pytest.fixture(scope="module")
def easy_vqa_setup():
    """easy-VQA with its tokenizer, processor, answer vocabulary and a tiny model config at 32 px."""
    train = easy_vqa_dataset("train")
    tokenizer = tokenizer_from_texts([record["question"] for record in train.records])
    processor = MamoProcessor(
        image_processor=MamoImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}), tokenizer=tokenizer
    )
    id2label, label2id = build_answer_vocabulary(record["answers"] for record in train.records)
    config = MamoConfig.tiny(
        vocab_size=len(tokenizer),
        image_size=IMAGE_SIZE,
        special_token_ids=special_token_ids(tokenizer),
        id2label=id2label,
        label2id=label2id,
    )
    return train, processor, config


def test_tokenizer_from_texts(easy_vqa_setup):
    _, processor, _ = easy_vqa_setup
    tokenizer = processor.tokenizer
    assert tokenizer.convert_ids_to_tokens([0, 1, 2, 3, 4]) == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("Is there a RED shape?")["input_ids"])
    assert tokens == ["[CLS]", "is", "there", "a", "red", "shape", "?", "[SEP]"]


def test_collator(easy_vqa_setup):
    train, processor, config = easy_vqa_setup
    items = [train[index] for index in range(4)]
    items[3]["answers"] = ["not an answer"]
    batch = VQACollator(processor, config.label2id, max_length=6)(items)
    assert set(batch) == {"pixel_values", "input_ids", "attention_mask", "labels"}
    assert batch["pixel_values"].shape == (4, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert batch["input_ids"].shape == batch["attention_mask"].shape and batch["input_ids"].shape[1] <= 6
    assert batch["labels"].shape == (4, len(config.id2label))
    for row, item in enumerate(items[:3]):
        assert batch["labels"][row, config.label2id[item["answers"][0]]] == 1.0 and batch["labels"][row].sum() == 1.0
    assert batch["labels"][3].sum() == 0.0  # answers outside the vocabulary contribute nothing


# ---------------------------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture
def batch(easy_vqa_setup):
    train, processor, config = easy_vqa_setup
    return VQACollator(processor, config.label2id)([train[index] for index in range(6)])


def test_forward_backward(easy_vqa_setup, batch):
    torch.manual_seed(0)
    model = MamoForQuestionAnswering(easy_vqa_setup[2])
    outputs = model(**batch)
    assert outputs.logits.shape == (6, 13) and outputs.loss.ndim == 0 and torch.isfinite(outputs.loss)
    outputs.loss.backward()
    assert model.vqa_head.classifier.weight.grad.abs().sum() > 0
    assert model.mamo.image_encoder.embeddings.patch_embeddings.weight.grad.abs().sum() > 0
    without_labels = model(**{key: value for key, value in batch.items() if key != "labels"})
    assert without_labels.loss is None and torch.allclose(without_labels.logits, outputs.logits)
    with pytest.raises(ValueError, match="labels"):
        model(**{**batch, "labels": batch["labels"][:, :5]})


def test_top_answers(easy_vqa_setup, batch):
    model = MamoForQuestionAnswering(easy_vqa_setup[2]).eval()
    logits = model(**batch).logits
    top = model.top_answers(logits, k=3)
    assert len(top) == 6
    for row in top:
        probabilities = [probability for _, probability in row]
        assert len(row) == 3 and probabilities == sorted(probabilities, reverse=True)
        assert all(0.0 <= probability <= 1.0 for probability in probabilities)
        assert all(answer in model.config.label2id for answer, _ in row)
    assert len(model.top_answers(logits, k=100)[0]) == 13


def test_trainer_steps_and_auto_class_round_trip(easy_vqa_setup, tmp_path):
    train, processor, config = easy_vqa_setup
    torch.manual_seed(0)
    model = MamoForQuestionAnswering(config)
    before = model.vqa_head.classifier.weight.detach().clone()
    arguments = TrainingArguments(
        output_dir=str(tmp_path / "run"),
        per_device_train_batch_size=8,
        max_steps=3,
        learning_rate=1e-3,
        remove_unused_columns=False,
        report_to=[],
        save_strategy="no",
    )
    subset = torch.utils.data.Subset(train, range(24))
    trainer = Trainer(
        model=model, args=arguments, train_dataset=subset, data_collator=VQACollator(processor, config.label2id)
    )
    result = trainer.train()
    assert result.global_step == 3 and torch.isfinite(torch.tensor(result.training_loss))
    assert not torch.equal(before, model.vqa_head.classifier.weight)

    trainer.save_model(str(tmp_path / "model"))
    loaded = AutoModelForVisualQuestionAnswering.from_pretrained(tmp_path / "model")
    assert isinstance(loaded, MamoForQuestionAnswering) and loaded.config.id2label == config.id2label
    inputs = VQACollator(processor, config.label2id)([train[index] for index in range(4)])
    inputs.pop("labels")
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model(**inputs).logits, loaded(**inputs).logits, atol=1e-6)


def test_a_caption_file_given_as_vqa_data_is_named_not_a_key_error(tmp_path):
    from mamo_hf.data import VQADataset

    (tmp_path / "captions.json").write_text(json.dumps([{"image": "a.png", "caption": "a red circle"}]))
    with pytest.raises(ValueError, match=r"captions.json, record 0: not a VQA record \(no question_id, question\)"):
        VQADataset.from_json(tmp_path / "captions.json")
