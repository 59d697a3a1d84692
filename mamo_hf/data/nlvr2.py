"""NLVR2 data: the JSON format of ALBEF/LAVIS, and a generated two-image reasoning task for CPU checks.

An item is `{"images": (PIL left, PIL right), "sentence": str, "label": 0 or 1}` (1 = the statement is true of the
pair). `NLVR2Collator` batches items into `pixel_values` `[batch, 2, 3, H, W]`, `input_ids`, `attention_mask` and
`labels`, the inputs of `MamoForVisualReasoning`.
"""

import random
from pathlib import Path

import torch
from PIL import Image

from .collator import ImageTextCollator
from .demo import COLOURS, SHAPES, SIZES, SceneObject, draw_scene
from .files import json_records
from .records import require_image_files

_TRUE_WORDS = {"true": 1, "false": 0}


class NLVR2Dataset(torch.utils.data.Dataset):
    """NLVR2 in the JSON format of ALBEF: a list of `{"images": [left, right], "sentence": str, "label": "True" or
    "False"}` with image paths relative to `image_root` (default: the file's folder).

    Raises:
        ValueError: naming the file (and the record), for a file that is not a non-empty JSON list, or a record
            without two images, a sentence, or a True/False label.
        FileNotFoundError: naming the file, when images it lists do not exist.
    """

    def __init__(self, annotation_file: str | Path, image_root: str | Path | None = None):
        annotation_file = Path(annotation_file)
        self.image_root = Path(image_root) if image_root is not None else annotation_file.parent
        holds = "NLVR2 records {'images': [left, right], 'sentence': ..., 'label': 'True' or 'False'}"
        self.records = [
            _check_record(record, where) for where, record in json_records(annotation_file, holds, allow_empty=False)
        ]
        paths = [self.image_root / path for images, _, _ in self.records for path in images]
        require_image_files(paths, str(annotation_file))

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        images, sentence, label = self.records[index]
        pair = tuple(Image.open(self.image_root / path).convert("RGB") for path in images)
        return {"images": pair, "sentence": sentence, "label": label}


def _check_record(record: dict, where: str) -> tuple[tuple[str, str], str, int]:
    images, sentence, label = record.get("images"), record.get("sentence"), str(record.get("label", "")).lower()
    if not isinstance(images, list) or len(images) != 2:
        raise ValueError(f"{where}: `images` must list two image paths, got {images!r}.")
    if not isinstance(sentence, str) or not sentence.strip():
        raise ValueError(f"{where}: `sentence` must be a non-empty string.")
    if label not in _TRUE_WORDS:
        raise ValueError(f"{where}: `label` must be True or False, got {record.get('label')!r}.")
    return (images[0], images[1]), sentence, _TRUE_WORDS[label]


class CountComparisonDataset(torch.utils.data.Dataset):
    """A generated NLVR2-like task: two images of coloured shapes and a statement comparing how many objects of one
    colour they show, e.g. "the left image has more red objects than the right image" (true or false, balanced).

    Each image has 1 to `max_objects` objects. Deterministic per index and seed; chance accuracy is 50 %. Solving it
    needs both images, the colour named in the statement and counting: neither image alone, nor the text alone,
    decides the label.
    """

    COMPARISONS = ("more", "fewer")

    def __init__(
        self,
        num_samples: int,
        seed: int = 0,
        image_size: int = 64,
        max_objects: int = 3,
        colours: tuple[str, ...] = ("red", "blue", "green"),
    ):
        self.num_samples, self.seed = num_samples, seed
        self.image_size, self.max_objects, self.colours = image_size, max_objects, colours

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> dict:
        rng = random.Random(f"nlvr:{self.seed}:{index}")
        colour = rng.choice(self.colours)
        comparison = rng.choice(self.COMPARISONS)
        counts = rng.sample(range(self.max_objects + 1), 2)  # two different counts of the named colour
        left, right = (_scene_with(rng, colour, count, self.max_objects, self.colours) for count in counts)
        is_true = counts[0] > counts[1] if comparison == "more" else counts[0] < counts[1]
        sentence = f"the left image has {comparison} {colour} objects than the right image"
        images = (draw_scene(left, self.image_size), draw_scene(right, self.image_size))
        return {"images": images, "sentence": sentence, "label": int(is_true)}


def _scene_with(rng: random.Random, colour: str, count: int, max_objects: int, colours) -> list[SceneObject]:
    """A scene with exactly `count` objects of `colour` and, if room is left, up to `max_objects` in all."""
    others = [other for other in colours if other != colour] or [c for c in COLOURS if c != colour]
    total = rng.randint(max(count, 1), max(count, max_objects))
    cells = rng.sample(range(9), total)
    return [
        SceneObject(
            colour if n < count else rng.choice(others),
            rng.choice(SHAPES),
            rng.choice(list(SIZES)),
            cell // 3,
            cell % 3,
        )
        for n, cell in enumerate(cells)
    ]


class NLVR2Collator(ImageTextCollator):
    """Batch NLVR2 items for `MamoForVisualReasoning`: `pixel_values` `[batch, 2, 3, H, W]`, `input_ids`,
    `attention_mask` and `labels` (`[batch]`)."""

    def __call__(self, items: list[dict]) -> dict:
        batch = self.encode([list(item["images"]) for item in items], [item["sentence"] for item in items])
        return {**batch, "labels": torch.tensor([item["label"] for item in items], dtype=torch.long)}


__all__ = ["CountComparisonDataset", "NLVR2Collator", "NLVR2Dataset"]
