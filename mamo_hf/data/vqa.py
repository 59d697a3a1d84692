"""Visual question answering data: VQA v2 files, easy-VQA, and the collator that makes model inputs and soft targets.

Every dataset here yields the same item, a dict with

- `image`: an RGB `PIL.Image.Image` (after the transform, if any),
- `question`: the question text,
- `answers`: the annotators' answers, a `list[str]` (10 for VQA v2, 1 for easy-VQA, empty where unknown: test-dev),
- `question_id`: the question's id.

Sources: `VQADataset.from_json` (the JSON list that ALBEF and LAVIS use), `VQADataset.from_official` (the official
questions and annotations files of VQA v2) and `easy_vqa_dataset` (the `easy-vqa` package: 64 × 64 images of one
coloured shape, 13 answers).
"""

import re
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from .collator import ImageTextCollator
from .files import json_records, read_json
from .records import require_image_files
from .vqa_answers import soft_scores

OFFICIAL_IMAGE_TEMPLATE = "COCO_{split}2014_{image_id:012d}.jpg"
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_WORD_OR_PUNCTUATION = re.compile(r"\w+|[^\w\s]")  # what BERT's basic tokenizer splits lowercased ASCII text into


def _as_answer_list(answers) -> list[str]:
    """ALBEF files hold a list of answers, sometimes a single string; test files hold none."""
    if answers is None:
        return []
    return [answers] if isinstance(answers, str) else list(answers)


def _checked_record(entry: dict, where: str) -> dict:
    """The dataset's record for an ALBEF entry, whose fields must have their types: a question id (number or
    text), a question and an image path (non-empty text), and answers (text, or a list of texts)."""
    question_id, question, image = entry["question_id"], entry["question"], entry["image"]
    answers = _as_answer_list(entry.get("answer"))
    if isinstance(question_id, bool) or not isinstance(question_id, (int, str)):
        raise ValueError(f"{where}: `question_id` must be a number or a string, got {question_id!r}.")
    for name, value in (("question", question), ("image", image)):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{where}: `{name}` must be a non-empty string, got {value!r}.")
    if not all(isinstance(answer, str) for answer in answers):
        raise ValueError(f"{where}: `answer` must be a string or a list of strings, got {entry.get('answer')!r}.")
    return {"question_id": question_id, "question": question, "image": image, "answers": answers}


class VQADataset(Dataset):
    """A map-style VQA dataset over records `{"question_id", "question", "image", "answers"}`, where `image` is a path
    (relative to `image_root`, or absolute). Build it from files with `from_json` or `from_official`.

    Args:
        records (`Sequence[dict]`): the questions, as above.
        image_root (`str` or `Path`, *optional*): folder that relative image paths start from.
        transform (`Callable[[PIL.Image.Image], PIL.Image.Image]`, *optional*): applied to every image (augmentation).
    """

    def __init__(self, records: Sequence[dict], image_root=None, transform: Callable | None = None):
        self.records = list(records)
        self.image_root = Path(image_root) if image_root is not None else None
        self.transform = transform

    @classmethod
    def from_json(cls, annotation_file, image_root=None, transform: Callable | None = None) -> "VQADataset":
        """Read the ALBEF / LAVIS format: a JSON list of `{"question_id", "question", "image": relative path,
        "answer": [annotator answers]}` (`answer` may be a single string, or absent for test questions). Image paths
        start from `image_root` (default: the file's folder), as in every reader of this package.

        Raises:
            ValueError: naming the file and the record, for a file that is not such a list (e.g. a caption file, or
                an empty list), or a field of the wrong type.
            FileNotFoundError: naming the file, when image files it lists do not exist.
        """
        records = []
        holds = "VQA records (question_id, question, image)"
        for where, entry in json_records(annotation_file, holds, allow_empty=False):
            missing = [
                key for key in ("question_id", "question", "image") if not isinstance(entry, dict) or key not in entry
            ]
            if missing:
                raise ValueError(f"{where}: not a VQA record (no {', '.join(missing)}); is it a file of another task?")
            records.append(_checked_record(entry, where))
        root = Path(image_root) if image_root is not None else Path(annotation_file).parent
        for record in records:  # resolved now, so that the records of files in other folders can be joined
            record["image"] = str(root / record["image"])
        return cls._read_from_files(records, None, transform, str(annotation_file))

    @classmethod
    def from_official(
        cls,
        questions_file,
        annotations_file=None,
        image_root=None,
        split: str = "train",
        image_template: str = OFFICIAL_IMAGE_TEMPLATE,
        transform: Callable | None = None,
    ) -> "VQADataset":
        """Read the official VQA v2 files: questions `{"questions": [{"question_id", "image_id", "question"}]}` and
        annotations `{"annotations": [{"question_id", "answers": [{"answer": ...}, ...]}]}` (none for test-dev and
        test-std). Image paths are `image_template.format(split=split, image_id=image_id)`, e.g.
        `COCO_val2014_000000262148.jpg` for `split="val"`.

        Raises:
            KeyError: if a question has no annotation while an annotations file is given.
            FileNotFoundError: naming the questions file, when image files do not exist.
        """
        answers = {}
        if annotations_file is not None:
            answers = {
                entry["question_id"]: [answer["answer"] for answer in entry["answers"]]
                for entry in read_json(annotations_file)["annotations"]
            }
        records = [
            {
                "question_id": entry["question_id"],
                "question": entry["question"],
                "image": image_template.format(split=split, image_id=entry["image_id"]),
                "answers": answers[entry["question_id"]] if annotations_file is not None else [],
            }
            for entry in read_json(questions_file)["questions"]
        ]
        return cls._read_from_files(records, image_root, transform, str(questions_file))

    def __len__(self) -> int:
        return len(self.records)

    @classmethod
    def _read_from_files(cls, records: list[dict], image_root, transform, where: str) -> "VQADataset":
        """The dataset of records read from `where`, once every image file they name is known to exist."""
        dataset = cls(records, image_root, transform)
        require_image_files([dataset._image_path(record) for record in records], where)
        return dataset

    def _image_path(self, record: dict) -> Path | object:
        """The record's image file (its path against `image_root`), or the image itself when it is not a path."""
        image = record["image"]
        if not isinstance(image, (str, Path)):
            return image
        path = Path(image)
        return self.image_root / path if self.image_root is not None and not path.is_absolute() else path

    def __getitem__(self, index: int) -> dict:
        record = self.records[index]
        with Image.open(self._image_path(record)) as image:
            image = image.convert("RGB")
        if self.transform is not None:
            image = self.transform(image)
        return {
            "image": image,
            "question": record["question"],
            "answers": list(record["answers"]),
            "question_id": record["question_id"],
        }


def easy_vqa_dataset(split: str, transform: Callable | None = None) -> VQADataset:
    """The easy-VQA data (`pip install easy-vqa`) as a `VQADataset`: `split` "train" (38,575 questions on 4,000
    images) or "test" (9,673 questions on 1,000 images). Each question has one answer (`answers` is a one-element
    list, which `vqa_accuracy` scores as exact match); `question_id` is its index in the split.

    Raises:
        ValueError: for another `split`.
    """
    import easy_vqa

    readers = {
        "train": (easy_vqa.get_train_questions, easy_vqa.get_train_image_paths),
        "test": (easy_vqa.get_test_questions, easy_vqa.get_test_image_paths),
    }
    if split not in readers:
        raise ValueError(f"easy-VQA has the splits 'train' and 'test', got {split!r}.")
    read_questions, read_image_paths = readers[split]
    questions, answers, image_ids = read_questions()
    image_paths = read_image_paths()
    records = [
        {"question_id": index, "question": question, "image": image_paths[image_id], "answers": [answer]}
        for index, (question, answer, image_id) in enumerate(zip(questions, answers, image_ids))
    ]
    return VQADataset(records, transform=transform)


def tokenizer_from_texts(texts: Sequence[str]):
    """A real `BertTokenizer` (uncased) over a closed vocabulary: [PAD] [UNK] [CLS] [SEP] [MASK] (ids 0-4), then every
    word and punctuation mark of `texts`, lowercased, in alphabetical order. For a model trained from scratch on a
    small synthetic dataset such as easy-VQA, whose questions use 27 words; anything else becomes [UNK]."""
    from transformers import BertTokenizer

    words = sorted({word for text in texts for word in _WORD_OR_PUNCTUATION.findall(text.lower())})
    return BertTokenizer(vocab={token: index for index, token in enumerate([*SPECIAL_TOKENS, *words])})


class VQACollator(ImageTextCollator):
    """Turn VQA items into the inputs of `MamoForQuestionAnswering`: `pixel_values`, `input_ids`, `attention_mask`
    (questions padded to the longest in the batch, cut at `max_length` tokens) and `labels`, the soft scores
    `[batch, num_answers]` of `soft_scores` (answers outside `label2id` contribute nothing).

    Args:
        processor (`MamoProcessor`): image processor and tokenizer.
        label2id (`dict[str, int]`): the answer vocabulary (normalised answers), e.g. `config.label2id`.
        max_length (`int`, *optional*, defaults to 35): longest question in tokens, [CLS] and [SEP] included.
    """

    def __init__(self, processor, label2id: dict[str, int], max_length: int = 35):
        super().__init__(processor, max_length)
        self.label2id = label2id

    def __call__(self, items: Sequence[dict]) -> dict[str, torch.Tensor]:
        batch = self.encode([item["image"] for item in items], [item["question"] for item in items])
        return {
            "pixel_values": batch["pixel_values"],
            "input_ids": batch["input_ids"],
            "attention_mask": batch["attention_mask"],
            "labels": soft_scores([item["answers"] for item in items], self.label2id),
        }


__all__ = ["OFFICIAL_IMAGE_TEMPLATE", "VQACollator", "VQADataset", "easy_vqa_dataset", "tokenizer_from_texts"]
