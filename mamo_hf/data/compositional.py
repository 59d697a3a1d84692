"""The compositional benchmarks, read from the files their authors publish as scoring items, with PIL images read
when an item is asked for:

- Winoground (`winoground_examples`): two images and two captions per example, `captions[i]` describing `images[i]`;
- ARO's VG-Relation and VG-Attribution (`aro_examples`) and SugarCrepe (`sugarcrepe_examples`): one image and
  candidate captions, `captions[answer]` the true one (`CaptionChoice`).

Every reader checks its whole annotation file before the first item is built, and raises a `ValueError` naming the
file (and the record) for a file that is not in the published format.
"""

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from numbers import Real
from pathlib import Path
from typing import Any

from PIL import Image

from .files import has_types, json_records, read_json
from .records import load_image

WINOGROUND_FIELDS = {
    "id": int,
    "image_0": str,
    "image_1": str,
    "caption_0": str,
    "caption_1": str,
    "tag": str,
    "secondary_tag": str,
    "num_main_preds": int,
    "collapsed_tag": str,
}
ARO_FILES = {"relation": "visual_genome_relation.json", "attribution": "visual_genome_attribution.json"}
ARO_BOX = ("bbox_x", "bbox_y", "bbox_w", "bbox_h")
SUGARCREPE_FILES = ("add_obj", "add_att", "replace_obj", "replace_att", "replace_rel", "swap_obj", "swap_att")


@dataclass(frozen=True)
class CaptionChoice:
    """One image and its candidate captions, of which `captions[answer]` is the true one. `group` is what a
    benchmark reports accuracy per (an ARO relation or attribute pair, a SugarCrepe file), `source` the file and
    record it comes from."""

    image: Image.Image
    captions: tuple[str, ...]
    answer: int
    group: str
    source: str


@dataclass(frozen=True)
class WinogroundExample:
    """One Winoground example: `captions[i]` describes `images[i]`, and the two captions hold the same words in
    another order; the tags of the dataset card."""

    id: int
    images: tuple[Image.Image, Image.Image]
    captions: tuple[str, str]
    tag: str
    secondary_tag: str
    num_main_preds: int
    collapsed_tag: str


class LazyItems(Sequence):
    """Benchmark items built from checked annotation records when they are asked for (so that images are read one
    item at a time); a slice is again a `LazyItems`."""

    def __init__(self, records: list, build: Callable[[Any], Any]):
        self.records = records
        self.build = build

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return LazyItems(self.records[index], self.build)
        return self.build(self.records[index])


def _jsonl_objects(file: Path) -> Iterator[tuple[str, Any]]:
    """`(where, value)` for the non-blank lines of a JSONL file; raises `ValueError` naming the file and the line for
    text that is not UTF-8 or a line that is not JSON."""
    with open(file, "rb") as handle:
        for number, line in enumerate(handle, 1):
            where = f"{file}, line {number}"
            try:
                text = line.decode("utf-8-sig" if number == 1 else "utf-8")
                if text.strip():
                    yield where, json.loads(text)
            except UnicodeDecodeError:
                raise ValueError(f"{where}: not UTF-8 text.") from None
            except json.JSONDecodeError as error:
                raise ValueError(f"{where}: not valid JSON: {error.msg}") from None


def winoground_examples(root: str | Path) -> LazyItems:
    """The Winoground examples of a folder holding the dataset's `examples.jsonl` and its `images/` folder (the
    extracted `images.zip`), in the file's order.

    Format (https://huggingface.co/datasets/facebook/winoground, `data/examples.jsonl` and its loading script
    `winoground.py`): one object per line, `{"id": int, "image_0": str, "image_1": str, "caption_0": str,
    "caption_1": str, "tag": str, "secondary_tag": str, "num_main_preds": int, "collapsed_tag": str}`, where the
    image fields are file names without extension (`"ex_0_img_0"`) of PNG files in `images/`.

    Raises:
        FileNotFoundError: for a missing `examples.jsonl`.
        ValueError: naming the file and line, for a line that is not JSON or lacks a field (or has another type).
    """
    root = Path(root)
    file = root / "examples.jsonl"
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no such file; give the folder with Winoground's examples.jsonl and images/.")
    records = []
    for where, record in _jsonl_objects(file):
        if not has_types(record, WINOGROUND_FIELDS):
            fields = ", ".join(f"{name} ({kind.__name__})" for name, kind in WINOGROUND_FIELDS.items())
            raise ValueError(f"{where}: a Winoground example needs the fields {fields}.")
        records.append(record)
    if not records:
        raise ValueError(f"{file}: no examples.")
    return LazyItems(records, lambda record: _winoground_example(record, root / "images"))


def _winoground_example(record: dict, image_folder: Path) -> WinogroundExample:
    return WinogroundExample(
        id=record["id"],
        images=tuple(load_image(image_folder / f"{record[f'image_{index}']}.png") for index in (0, 1)),
        captions=(record["caption_0"], record["caption_1"]),
        tag=record["tag"],
        secondary_tag=record["secondary_tag"],
        num_main_preds=record["num_main_preds"],
        collapsed_tag=record["collapsed_tag"],
    )


def aro_examples(root: str | Path, subset: str = "relation") -> LazyItems:
    """ARO's VG-Relation (`subset="relation"`) or VG-Attribution (`"attribution"`) items of a folder holding
    `visual_genome_relation.json` / `visual_genome_attribution.json` and the `images/` folder of `vgr_vga_images.zip`.

    Format (mertyg/vision-language-models-are-bows, `dataset_zoo/aro_datasets.py`): a JSON list of `{"image_path":
    str (under images/), "bbox_x", "bbox_y", "bbox_w", "bbox_h": numbers, "true_caption": str, "false_caption": str}`
    with `"relation_name": str` (VG-Relation) or `"attributes": [str, str]` (VG-Attribution). As ARO does, each image
    is cropped to its box `(x, y, x + w, y + h)`, the captions are `(false_caption, true_caption)` (answer 1), and the
    group is the relation name or the two attributes joined by `_`.

    Raises:
        ValueError: for an unknown subset, or naming the file and record, for a file not in this format.
    """
    if subset not in ARO_FILES:
        raise ValueError(f"Unknown ARO subset {subset!r}; use one of {', '.join(ARO_FILES)}.")
    root = Path(root)
    file = root / ARO_FILES[subset]
    records = []
    for where, record in json_records(file, holds="ARO test cases", allow_empty=False):
        records.append((where, record, _aro_group(where, record, subset)))
    return LazyItems(records, lambda entry: _aro_item(*entry, root / "images"))


def _aro_group(where: str, record: Any, subset: str) -> str:
    """The group of an ARO record (its relation, or its two attributes joined by `_`), once the record is checked."""
    fields = {"image_path": str, "true_caption": str, "false_caption": str} | dict.fromkeys(ARO_BOX, Real)
    if not has_types(record, fields):
        raise ValueError(f"{where}: an ARO test case needs 'image_path', {', '.join(ARO_BOX)} and both captions.")
    if subset == "relation":
        if not isinstance(record.get("relation_name"), str):
            raise ValueError(f"{where}: a VG-Relation test case needs its 'relation_name'.")
        return record["relation_name"]
    attributes = record.get("attributes")
    if not (isinstance(attributes, list) and len(attributes) == 2 and all(isinstance(a, str) for a in attributes)):
        raise ValueError(f"{where}: a VG-Attribution test case needs its two 'attributes'.")
    return "_".join(attributes)


def _aro_item(where: str, record: dict, group: str, image_folder: Path) -> CaptionChoice:
    x, y, width, height = (record[name] for name in ARO_BOX)
    image = load_image(image_folder / record["image_path"]).crop((x, y, x + width, y + height))
    captions = (record["false_caption"], record["true_caption"])
    return CaptionChoice(image=image, captions=captions, answer=1, group=group, source=where)


def sugarcrepe_examples(
    data_root: str | Path, image_root: str | Path, names: Sequence[str] | None = None
) -> LazyItems:
    """SugarCrepe's items: for each file `<name>.json` of `data_root` (default: those of `SUGARCREPE_FILES` that
    are there), in order, its records; images are COCO val2017 files under `image_root`.

    Format (RAIVNLab/sugar-crepe, `data/*.json`, read by `main_eval.py`): a JSON object `{"0": {"filename": str,
    "caption": str, "negative_caption": str}, "1": ...}`. The captions are `(caption, negative_caption)` (answer 0)
    and the group is the file's name (`swap_att`, ...).

    Raises:
        FileNotFoundError: for a named file that is missing, or no SugarCrepe file in `data_root`.
        ValueError: naming the file and record, for a file not in this format.
    """
    data_root, image_root = Path(data_root), Path(image_root)
    if names is None:
        names = [name for name in SUGARCREPE_FILES if (data_root / f"{name}.json").is_file()]
        if not names:
            expected = ", ".join(f"{name}.json" for name in SUGARCREPE_FILES)
            raise FileNotFoundError(f"{data_root}: none of SugarCrepe's files ({expected}).")
    records = []
    for name in names:
        file = data_root / f"{name}.json"
        if not file.is_file():
            raise FileNotFoundError(f"{file}: no such file.")
        records += [(where, record, name) for where, record in _sugarcrepe_records(file)]
    return LazyItems(records, lambda entry: _sugarcrepe_item(*entry, image_root))


def _sugarcrepe_records(file: Path) -> list[tuple[str, dict]]:
    """`(where, record)` for the records of one SugarCrepe file, all checked."""
    data = read_json(file)
    if not (isinstance(data, dict) and data):
        raise ValueError(f"{file}: expected a non-empty JSON object of SugarCrepe records keyed by number.")
    fields = {"filename": str, "caption": str, "negative_caption": str}
    for key, record in data.items():
        if not has_types(record, fields):
            raise ValueError(f"{file}, record {key!r}: needs a 'filename', a 'caption' and a 'negative_caption'.")
    return [(f"{file}, record {key!r}", record) for key, record in data.items()]


def _sugarcrepe_item(where: str, record: dict, name: str, image_root: Path) -> CaptionChoice:
    image = load_image(image_root / record["filename"])
    captions = (record["caption"], record["negative_caption"])
    return CaptionChoice(image=image, captions=captions, answer=0, group=name, source=where)


__all__ = [
    "ARO_FILES",
    "SUGARCREPE_FILES",
    "CaptionChoice",
    "LazyItems",
    "WinogroundExample",
    "aro_examples",
    "sugarcrepe_examples",
    "winoground_examples",
]
