"""Image-text retrieval data: the Karpathy-split JSON files of ALBEF (COCO, Flickr30K) and generated splits.

Training files are lists of `{"image": path, "caption": str, "image_id": ...}` and load with `CaptionDataset`
(pairs of one image share an `image_id`, so they are positives of each other). Evaluation files are lists of
`{"image": path, "caption": [str, ...]}` (5 captions per image for COCO and Flickr30K); `load_retrieval_split`
turns them into what `mamo_hf.evaluation.retrieval` takes.
"""

import random
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from .demo import caption, demo_scene, draw_scene
from .files import json_records
from .finegrained import evaluation_scene
from .records import require_image_files
from .transforms import clean_caption


@dataclass
class RetrievalSplit:
    """An evaluation corpus: images (paths or PIL images), texts, and the ground truth in both directions."""

    images: list
    texts: list[str]
    image_to_texts: list[list[int]]
    text_to_image: list[int]


def load_retrieval_split(
    annotation_file: str | Path, image_root: str | Path | None = None, max_words: int = 30
) -> RetrievalSplit:
    """Read an ALBEF evaluation file (`[{"image": path, "caption": [str, ...]}, ...]`); image paths are resolved
    against `image_root` (default: the file's folder) and captions cleaned like training captions.

    Raises:
        ValueError: naming the file (and the record), for a file that is not a non-empty JSON list, or a record
            without an image path or without caption texts.
        FileNotFoundError: naming the file, when images it lists do not exist.
    """
    annotation_file = Path(annotation_file)
    root = Path(image_root) if image_root is not None else annotation_file.parent
    split = RetrievalSplit([], [], [], [])
    holds = "retrieval records {'image': ..., 'caption': [...]}"
    for where, record in json_records(annotation_file, holds, allow_empty=False):
        image, captions = _image_and_captions(record, where)
        _add_image(split, str(root / image), [clean_caption(text, max_words) for text in captions])
    require_image_files(split.images, str(annotation_file))
    return split


def _image_and_captions(record, where: str) -> tuple[str, list[str]]:
    """A record's image path and its captions (one string, or a list of them), checked."""
    image = record.get("image") if isinstance(record, dict) else None
    captions = record.get("caption") if isinstance(record, dict) else None
    captions = [captions] if isinstance(captions, str) else captions
    if not isinstance(image, str) or not image or not isinstance(captions, list) or not captions:
        raise ValueError(f"{where}: needs an `image` path and at least one `caption`.")
    if not all(isinstance(text, str) for text in captions):
        raise ValueError(f"{where}: every `caption` must be a string, got {captions!r}.")
    return image, captions


def demo_retrieval_split(
    num_images: int,
    seed: int = 0,
    captions_per_image: int = 2,
    image_size: int = 64,
    max_objects: int = 3,
    reserved: bool = False,
) -> RetrievalSplit:
    """A generated corpus: demo scenes (PIL images) with `captions_per_image` captions each, which list the same
    objects in different orders. The scenes are those of `DemoCaptionDataset` for the same seed (training
    configurations), or, with `reserved=True`, scenes of two to `max_objects` objects of the configurations reserved
    for evaluation (`mamo_hf.data.finegrained.evaluation_scene`), which no training data holds."""
    if reserved and not 2 <= max_objects <= 3:
        raise ValueError(f"Reserved scenes hold 2 or 3 objects: max_objects must be 2 or 3, got {max_objects}.")
    split = RetrievalSplit([], [], [], [])
    for index in range(num_images):
        if reserved:
            scene_rng = random.Random(f"reserved:{seed}:{index}")
            scene = evaluation_scene(scene_rng, scene_rng.randint(2, max_objects))
        else:
            scene = demo_scene(seed, index, max_objects)
        rng = random.Random(f"captions:{seed}:{index}")
        orders = [scene] + [rng.sample(scene, len(scene)) for _ in range(captions_per_image - 1)]
        _add_image(split, draw_scene(scene, image_size), [caption(order) for order in orders])
    return split


class RetrievalPairs(torch.utils.data.Dataset):
    """The (image, caption) pairs of a `RetrievalSplit` as training items for `PretrainingCollator`; the pairs of
    one image share its `image_id`."""

    def __init__(self, split: RetrievalSplit):
        self.split = split

    def __len__(self) -> int:
        return len(self.split.texts)

    def __getitem__(self, index: int) -> dict:
        image = self.split.images[self.split.text_to_image[index]]
        image = Image.open(image).convert("RGB") if isinstance(image, (str, Path)) else image
        return {
            "image": image,
            "caption": self.split.texts[index],
            "image_id": self.split.text_to_image[index],
            "skipped": (),
            "sample_key": index,
        }


def _add_image(split: RetrievalSplit, image, captions: list[str]) -> None:
    split.image_to_texts.append(list(range(len(split.texts), len(split.texts) + len(captions))))
    split.text_to_image.extend([len(split.images)] * len(captions))
    split.texts.extend(captions)
    split.images.append(image)


__all__ = ["RetrievalPairs", "RetrievalSplit", "demo_retrieval_split", "load_retrieval_split"]
