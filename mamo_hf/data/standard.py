"""Standard caption data, read from the files their authors publish and converted to the package's files (written with
`write_json`):

- COCO captions (`captions_train2014.json`, `captions_val2014.json`, ...) → pre-training records
  `{"image": path, "caption": str, "image_id": int}`, one per caption (`coco_caption_records`);
- Karpathy splits (`dataset_coco.json`, `dataset_flickr30k.json`) → pre-training records of the training split,
  `train` and `restval` (`karpathy_caption_records`), and ALBEF's retrieval evaluation records
  `{"image": path, "caption": [str, ...]}` of `val` or `test` (`karpathy_retrieval_records`), which
  `mamo_hf.data.retrieval.load_retrieval_split` reads (`karpathy_retrieval_split` does both).

Pre-training records load with `CaptionDataset` (which ignores `image_id`); image paths are relative to the image
root of the dataset (`image_folder` is put in front of each file name). The compositional benchmarks' readers
(Winoground, ARO, SugarCrepe) are in `mamo_hf.data.compositional`.

Every reader checks its whole annotation file before the first record is built, and raises a `ValueError` naming the
file (and the record) for a file that is not in the published format.
"""

import json
import posixpath
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .files import has_types, read_json
from .retrieval import RetrievalSplit, load_retrieval_split

KARPATHY_SPLITS = ("train", "restval", "val", "test")
KARPATHY_TRAINING_SPLITS = ("train", "restval")


def write_json(records: list[dict], path: str | Path) -> Path:
    """Write records as one JSON list (UTF-8, non-ASCII characters kept), creating the folder; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def _image_path(image_folder: str, *parts: str) -> str:
    """A relative path in the `/` form of the annotation files: `image_folder/part/...` (empty parts left out)."""
    return posixpath.join(*(part for part in (image_folder, *parts) if part))


# ---------------------------------------------------------------------------------------------------------------
# COCO captions
# ---------------------------------------------------------------------------------------------------------------


def coco_caption_records(annotation_file: str | Path, image_folder: str = "") -> list[dict]:
    """The pre-training records of a COCO captions file: `{"image": image_folder/file_name, "caption": caption,
    "image_id": id}`, one per caption, in the file's order of annotations.

    Format (https://cocodataset.org/#format-data; read by cocodataset/cocoapi, `PythonAPI/pycocotools/coco.py`): an
    object with `"images": [{"id": int, "file_name": str, ...}]` and `"annotations": [{"image_id": int, "id": int,
    "caption": str}]`. `image_folder` is the images' folder under the image root, e.g. `"train2014"`.

    Raises:
        ValueError: naming the file, for text that is not JSON, a missing list, an image without `id` or
            `file_name`, or an annotation without a caption or whose `image_id` is not among the images.
    """
    data = read_json(annotation_file)
    if not (
        isinstance(data, dict) and isinstance(data.get("images"), list) and isinstance(data.get("annotations"), list)
    ):
        raise ValueError(
            f"{annotation_file}: expected a COCO captions file, an object with 'images' and 'annotations'."
        )
    file_names = {}
    for number, image in enumerate(data["images"]):
        if not has_types(image, {"id": int, "file_name": str}):
            raise ValueError(f"{annotation_file}, images[{number}]: needs an integer 'id' and a 'file_name'.")
        file_names[image["id"]] = image["file_name"]
    records = []
    for number, annotation in enumerate(data["annotations"]):
        where = f"{annotation_file}, annotations[{number}]"
        if not has_types(annotation, {"image_id": int, "caption": str}):
            raise ValueError(f"{where}: needs an integer 'image_id' and a 'caption' string.")
        if annotation["image_id"] not in file_names:
            raise ValueError(f"{where}: image_id {annotation['image_id']} is not among the file's images.")
        image = _image_path(image_folder, file_names[annotation["image_id"]])
        records.append({"image": image, "caption": annotation["caption"], "image_id": annotation["image_id"]})
    return records


# ---------------------------------------------------------------------------------------------------------------
# Karpathy splits
# ---------------------------------------------------------------------------------------------------------------


def karpathy_images(karpathy_file: str | Path, splits: Sequence[str]) -> list[dict]:
    """The image entries of a Karpathy split file whose `split` is one of `splits`, in the file's order.

    Format (Karpathy's `caption_datasets.zip`: `dataset_coco.json`, `dataset_flickr8k.json`, `dataset_flickr30k.json`;
    read by karpathy/neuraltalk, `imagernn/data_provider.py`, and ruotianluo/self-critical.pytorch,
    `scripts/prepro_feats.py`): `{"images": [{"filepath": str (COCO only), "filename": str, "split": "train" |
    "restval" | "val" | "test", "sentences": [{"raw": str, "tokens": [str], "imgid": int, "sentid": int}],
    "imgid": int, "sentids": [int], "cocoid": int (COCO only)}], "dataset": str}`.

    Raises:
        ValueError: naming the file, for an unknown split name, a file not in this format, or no image in `splits`.
    """
    unknown = sorted(set(splits) - set(KARPATHY_SPLITS))
    if unknown:
        raise ValueError(f"Unknown Karpathy split {unknown[0]!r}; the splits are {', '.join(KARPATHY_SPLITS)}.")
    data = read_json(karpathy_file)
    if not (isinstance(data, dict) and isinstance(data.get("images"), list)):
        raise ValueError(f"{karpathy_file}: expected a Karpathy split file, an object with an 'images' list.")
    images = []
    for number, image in enumerate(data["images"]):
        where = f"{karpathy_file}, images[{number}]"
        if not has_types(image, {"filename": str, "split": str, "sentences": list}):
            raise ValueError(f"{where}: needs a 'filename', a 'split' and a 'sentences' list.")
        if not all(has_types(sentence, {"raw": str}) for sentence in image["sentences"]):
            raise ValueError(f"{where}: every sentence needs its 'raw' text.")
        if image["split"] in splits:
            images.append(image)
    if not images:
        raise ValueError(f"{karpathy_file}: no image in the split(s) {', '.join(splits)}.")
    return images


def karpathy_image_path(image: dict, image_folder: str = "") -> str:
    """The relative path of a Karpathy image entry: `image_folder/filepath/filename` (`filepath`, COCO's `train2014`
    or `val2014`, is absent from the Flickr files)."""
    return _image_path(image_folder, image.get("filepath", ""), image["filename"])


def karpathy_caption_records(
    karpathy_file: str | Path, splits: Sequence[str] = KARPATHY_TRAINING_SPLITS, image_folder: str = ""
) -> list[dict]:
    """The pre-training records of Karpathy splits (default: the training images, `train` and `restval`):
    `{"image": path, "caption": raw sentence, "image_id": cocoid or imgid}`, one per sentence, as ALBEF's
    `coco_train.json` (read by salesforce/ALBEF, `dataset/caption_dataset.py`, `re_train_dataset`; see
    `karpathy_images` for the format and the errors)."""
    return [
        {"image": karpathy_image_path(image, image_folder), "caption": sentence["raw"], "image_id": _image_id(image)}
        for image in karpathy_images(karpathy_file, splits)
        for sentence in image["sentences"]
    ]


def _image_id(image: dict) -> int:
    """A Karpathy image's id: its COCO id (`cocoid`), or its number in the file (`imgid`) in the Flickr files."""
    return image.get("cocoid", image.get("imgid"))


def karpathy_retrieval_records(karpathy_file: str | Path, split: str = "test", image_folder: str = "") -> list[dict]:
    """The retrieval evaluation records of one Karpathy split, as ALBEF's `coco_test.json` or `flickr30k_test.json`
    (read by salesforce/ALBEF, `dataset/caption_dataset.py`, `re_eval_dataset`): `{"image": path, "caption": [raw
    sentences]}`, one per image (see `karpathy_images` for the format and the errors)."""
    return [
        {
            "image": karpathy_image_path(image, image_folder),
            "caption": [sentence["raw"] for sentence in image["sentences"]],
        }
        for image in karpathy_images(karpathy_file, [split])
    ]


def karpathy_retrieval_split(
    karpathy_file: str | Path,
    image_root: str | Path,
    split: str = "test",
    image_folder: str = "",
    max_words: int = 30,
) -> RetrievalSplit:
    """One Karpathy split as a `RetrievalSplit`: its `karpathy_retrieval_records`, read by `load_retrieval_split`
    (so that captions are cleaned as for any retrieval file), image paths under `image_root`."""
    records = karpathy_retrieval_records(karpathy_file, split, image_folder)
    with tempfile.TemporaryDirectory() as folder:
        return load_retrieval_split(write_json(records, Path(folder) / f"{split}.json"), image_root, max_words)


__all__ = [
    "KARPATHY_SPLITS",
    "coco_caption_records",
    "karpathy_caption_records",
    "karpathy_image_path",
    "karpathy_images",
    "karpathy_retrieval_records",
    "karpathy_retrieval_split",
    "write_json",
]
