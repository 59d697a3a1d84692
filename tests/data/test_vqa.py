"""VQA data (`mamo_hf.data.vqa`): VQA v2 files in ALBEF's and the official layout, easy-VQA, the tokenizer from texts
and the collator."""

import json
from pathlib import Path

import pytest
from helpers import EASY_VQA_IMAGE_SIZE as IMAGE_SIZE
from helpers import easy_vqa_parts
from PIL import Image

from mamo_hf.data.vqa import VQACollator, VQADataset, easy_vqa_dataset


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
    return easy_vqa_parts()


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


def test_a_caption_file_given_as_vqa_data_is_named_not_a_key_error(tmp_path):
    from mamo_hf.data import VQADataset

    (tmp_path / "captions.json").write_text(json.dumps([{"image": "a.png", "caption": "a red circle"}]))
    with pytest.raises(ValueError, match=r"captions.json, record 0: not a VQA record \(no question_id, question\)"):
        VQADataset.from_json(tmp_path / "captions.json")
