"""Data for weakly-supervised visual grounding (docs/method.md §5 "Downstream tasks"): RefCOCO+ in ALBEF's layout, and
a generated set.

A grounding sample is an image, a referring expression, proposal boxes `(x, y, w, h)` in pixels of the image, and
the ground truth: either the index of the right proposal, or the referred object's box (a proposal is then correct
when its IoU with it is at least 0.5, as in RefCOCO+). Training uses the expressions only, as image-caption pairs
for ITC + ITM fine-tuning: the boxes are for evaluation.

**RefCOCO+ as ALBEF distributes it** (`read_refcoco`):

- expression files `refcoco+_train.json`, `refcoco+_val.json`, `refcoco+_test.json`: a JSON list of records
  `{"image": "<path under image_root>", "text": "<expression>", "ref_id": <int>}` (`refcoco+_test.json` holds
  testA and testB together);
- the detections file `refcoco+/dets.json` (MAttNet's proposals): a JSON object mapping the COCO image id, as a
  string, to a list of boxes `[x, y, w, h, ...]` (entries after the fourth, such as a score, are ignored);
- the ground truth and the split of each `ref_id` are not in those files: ALBEF reads them with the REFER API from
  `refcoco+/refs(unc).p` (a pickled list of refs: `ref_id`, `ann_id`, `image_id`, `split`, ...) and
  `refcoco+/instances.json` (COCO annotations: `id`, `bbox`). `read_refer_targets` reads these two files
  without the REFER package. A record may instead carry its own `"bbox"` `[x, y, w, h]` (and `"split"`).

**The generated set** (`generated_grounding_samples`, `GroundingCaptionDataset`): scenes of two or three shapes of
`mamo_hf.data.demo`, all different, each referred to by an expression that names its shape and its colour and/or
size where needed to tell it from the others (or, at random, where not): "the circle", "the red circle", "the large
blue square"; never its position, so that only looking at the image can find it. Proposals are the boxes of all
objects of the scene. `UnambiguousBatchSampler` draws training batches free of false negatives. With `reserved`,
the scenes are drawn only from the configurations the demo world reserves for evaluation (True) or never from them
(False), so that test scenes are disjoint from fine-tuning scenes and from pre-training on the demo data.
"""

import itertools
import json
import os
import pickle
import random
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import torch
from PIL import Image

from .captions import MapCaptionDataset
from .demo import COLOURS, SHAPES, SIZES, SceneObject, draw_scene
from .files import json_records
from .records import CaptionOptions, Pair
from .reserved import is_evaluation_scene
from .transforms import clean_caption

Box = tuple[float, float, float, float]

# Attribute sets an expression may use, fewest first: always the shape (the noun), plus colour and/or size.
_ATTRIBUTE_SETS = (("shape",), ("colour", "shape"), ("size", "shape"), ("size", "colour", "shape"))
_ATTRIBUTE_WORDS = {"colour": COLOURS, "shape": SHAPES, "size": SIZES}
# Every kind of object (colour, shape, size), placed in cell 0; `dataclasses.replace` moves one to its cell.
_OBJECT_KINDS = tuple(SceneObject(*kind, row=0, column=0) for kind in itertools.product(COLOURS, SHAPES, SIZES))
_COCO_IMAGE_ID = re.compile(r"(\d+)\.\w+$")


@dataclass(frozen=True)
class GroundingSample:
    """One referring expression to ground.

    Args:
        image (`PIL.Image.Image` or path): the image.
        text (`str`): the referring expression.
        boxes (`tuple` of `(x, y, w, h)`): the proposals, in pixels of `image`.
        target_index (`int`, *optional*): index of the right proposal in `boxes`.
        target_box (`(x, y, w, h)`, *optional*): the referred object's box; a proposal is right when its IoU with it
            reaches the threshold (0.5). Exactly one of `target_index` and `target_box` is given.
        ref_id (`int`, *optional*), split (`str`, *optional*): RefCOCO+ reference id and split ("val", "testA", ...).
    """

    image: Image.Image | str
    text: str
    boxes: tuple[Box, ...]
    target_index: int | None = None
    target_box: Box | None = None
    ref_id: int | None = None
    split: str | None = None

    def __post_init__(self):
        if (self.target_index is None) == (self.target_box is None):
            raise ValueError("A GroundingSample needs exactly one of `target_index` and `target_box`.")
        if self.target_index is not None and not 0 <= self.target_index < len(self.boxes):
            raise ValueError(f"target_index {self.target_index} is not the index of one of {len(self.boxes)} boxes.")


# ---------------------------------------------------------------------------------------------------------------
# RefCOCO+ (ALBEF's files)
# ---------------------------------------------------------------------------------------------------------------


class ReferTarget(NamedTuple):
    """The ground truth of a RefCOCO+ reference: its COCO image id, the referred object's box and the split."""

    image_id: int
    box: Box
    split: str


def read_refer_targets(refs_file, instances_file) -> dict[int, ReferTarget]:
    """Read the ground truth of every reference from the REFER files of RefCOCO+ (`refs(unc).p`, `instances.json`).

    `refs(unc).p` is a pickle: only read one from a source you trust.

    Returns:
        `{ref_id: ReferTarget(image_id, box, split)}`, with the box `[x, y, w, h]` of the reference's annotation.
    """
    with open(refs_file, "rb") as handle:
        refs = pickle.load(handle)
    with open(instances_file, encoding="utf-8") as handle:
        boxes = {annotation["id"]: annotation["bbox"] for annotation in json.load(handle)["annotations"]}
    return {
        ref["ref_id"]: ReferTarget(ref["image_id"], tuple(map(float, boxes[ref["ann_id"]])), ref["split"])
        for ref in refs
    }


def _coco_image_id(image_path: str) -> int | None:
    """The COCO image id in a file name such as `COCO_train2014_000000581857.jpg` (581857), if there is one."""
    match = _COCO_IMAGE_ID.search(image_path)
    return int(match[1]) if match else None


def _record_sample(where: str, record: dict, detections: dict, targets: dict, root: str, max_words) -> GroundingSample:
    """The sample of one expression record; raises a `ValueError` naming `where` for what is missing."""
    if not ({"image", "text", "ref_id"} <= record.keys()):
        raise ValueError(f"{where}: a record needs 'image', 'text' and 'ref_id', got {str(record)[:200]}")
    ref_id = record["ref_id"]
    target = targets.get(ref_id)
    if target is None and "bbox" not in record:
        raise ValueError(
            f"{where}: no ground truth for ref_id {ref_id}: pass `targets=read_refer_targets(refs_file, "
            "instances_file)` or give the record a 'bbox' [x, y, w, h]."
        )
    image_id = target.image_id if target is not None else record.get("image_id", _coco_image_id(record["image"]))
    boxes = detections.get(str(image_id))
    if not boxes:
        raise ValueError(f"{where}: the detections file has no proposals for image id {image_id}.")
    return GroundingSample(
        image=os.path.normpath(os.path.join(root, record["image"])),
        text=clean_caption(record["text"], max_words),
        boxes=tuple(tuple(float(value) for value in box[:4]) for box in boxes),
        target_box=target.box if target is not None else tuple(map(float, record["bbox"])),
        ref_id=ref_id,
        split=target.split if target is not None else record.get("split"),
    )


def read_refcoco(
    annotation_files,
    detections_file,
    image_root=None,
    targets: dict[int, ReferTarget] | None = None,
    splits: tuple[str, ...] | None = None,
    max_words: int | None = 30,
) -> list[GroundingSample]:
    """Read RefCOCO+ expressions and proposals in ALBEF's layout (see the module docstring) as grounding samples.

    Args:
        annotation_files (path or list of paths): `refcoco+_val.json`, `refcoco+_test.json`, ...
        detections_file (path): `dets.json`, `{"<coco image id>": [[x, y, w, h, ...], ...]}`.
        image_root (path, *optional*): folder the records' image paths are relative to (default: the folder of the
            annotation file).
        targets (`dict`, *optional*): ground truth per `ref_id`, from `read_refer_targets`; without it, records must
            carry a `"bbox"` (and may carry a `"split"` and an `"image_id"`; else the id is read from the COCO file
            name).
        splits (`tuple` of `str`, *optional*): keep only these splits (e.g. `("testA",)`).
        max_words (`int`, *optional*): expressions are cleaned and cut as captions are (`clean_caption`).

    Returns:
        The samples, with `target_box` set (a proposal is right at IoU ≥ 0.5).

    Raises:
        ValueError: for a record without `image`, `text` or `ref_id`, without ground truth, or whose image has no
            proposals.
    """
    if isinstance(annotation_files, (str, os.PathLike)):
        annotation_files = [annotation_files]
    with open(detections_file, encoding="utf-8") as handle:
        detections = json.load(handle)
    samples = []
    for file in map(Path, annotation_files):
        root = os.path.abspath(image_root if image_root is not None else file.parent)
        for where, record in json_records(file):
            sample = _record_sample(where, record, detections, targets or {}, root, max_words)
            if splits is None or sample.split in splits:
                samples.append(sample)
    return samples


# ---------------------------------------------------------------------------------------------------------------
# Generated scenes
# ---------------------------------------------------------------------------------------------------------------


class GroundingScene(NamedTuple):
    """A generated scene: its objects, and for each object an expression that refers to it alone."""

    objects: list[SceneObject]
    expressions: list[str]


def object_box(scene_object: SceneObject, image_size: int) -> Box:
    """The box `(x, y, w, h)` in pixels of an object drawn by `mamo_hf.data.demo.draw_scene` at `image_size`."""
    cell = image_size / 3
    radius = SIZES[scene_object.size] * image_size / 2
    centre_x, centre_y = (scene_object.column + 0.5) * cell, (scene_object.row + 0.5) * cell
    return (centre_x - radius, centre_y - radius, 2 * radius, 2 * radius)


def expression_attributes(expression: str) -> dict[str, str]:
    """The attributes an expression names: `{"colour": ..., "shape": ..., "size": ...}` for the words it has."""
    return {name: word for word in expression.split() for name, words in _ATTRIBUTE_WORDS.items() if word in words}


def describes(attributes: dict[str, str], scene_object: SceneObject) -> bool:
    """Whether an object has every attribute of `attributes` (e.g. `{"colour": "red", "shape": "circle"}`)."""
    return all(getattr(scene_object, name) == value for name, value in attributes.items())


def identifying_attributes(objects: list[SceneObject], target: int) -> list[tuple[str, ...]]:
    """The attribute sets (shape; colour and shape; size and shape; all three) whose values only `objects[target]`
    has in the scene: the expressions built from them refer to it alone."""
    referred = objects[target]
    return [
        names
        for names in _ATTRIBUTE_SETS
        if sum(describes({name: getattr(referred, name) for name in names}, other) for other in objects) == 1
    ]


def referring_expression(objects: list[SceneObject], target: int, rng: random.Random) -> str:
    """An expression for `objects[target]`, "the [size] [colour] shape", from attributes drawn by `rng` among those
    that identify it (`identifying_attributes`); never its position."""
    names = rng.choice(identifying_attributes(objects, target))
    return "the " + " ".join(getattr(objects[target], name) for name in names)


def grounding_scene(
    seed: int, index: int, min_objects: int = 2, max_objects: int = 3, reserved: bool | None = None
) -> GroundingScene:
    """Scene `index` of the generated grounding set of `seed`: `min_objects` to `max_objects` objects of different
    kinds (colour, shape, size) in different cells, and their expressions. From its own RNG, seeded by
    `(seed, index)`, so any scene can be drawn alone.

    `reserved`: None for any configuration; False to redraw the objects until the scene is not of a configuration
    reserved for evaluation (`mamo_hf.data.reserved.is_evaluation_scene`), True until it is one (such scenes have two
    objects or more). Scenes drawn with True and with False can never show the same configuration, whatever the
    seeds, and the demo's training data (`DemoCaptionDataset`) never holds a reserved one."""
    if reserved and max_objects < 2:
        raise ValueError(f"Reserved configurations have two objects or more: max_objects is {max_objects}.")
    rng = random.Random(f"grounding:{seed}:{index}")
    objects = _distinct_objects(rng, min_objects, max_objects)
    while reserved is not None and is_evaluation_scene(objects) != reserved:
        objects = _distinct_objects(rng, min_objects, max_objects)
    return GroundingScene(objects, [referring_expression(objects, target, rng) for target in range(len(objects))])


def _distinct_objects(rng: random.Random, min_objects: int, max_objects: int) -> list[SceneObject]:
    """`min_objects` to `max_objects` objects of different kinds in different cells."""
    count = rng.randint(min_objects, max_objects)
    cells, kinds = rng.sample(range(9), count), rng.sample(_OBJECT_KINDS, count)
    return [replace(kind, row=cell // 3, column=cell % 3) for cell, kind in zip(cells, kinds)]


def generated_grounding_samples(
    num_scenes: int, seed: int = 0, image_size: int = 64, **scene_options
) -> list[GroundingSample]:
    """Grounding samples of `num_scenes` generated scenes (`grounding_scene(seed, index, **scene_options)`: objects
    per scene, reserved configurations): one per object (its expression, every object's box as the proposals,
    `target_index` = the object's). The same for the same arguments."""
    samples = []
    for index in range(num_scenes):
        scene = grounding_scene(seed, index, **scene_options)
        image = draw_scene(scene.objects, image_size)
        boxes = tuple(object_box(scene_object, image_size) for scene_object in scene.objects)
        for target, expression in enumerate(scene.expressions):
            samples.append(GroundingSample(image=image, text=expression, boxes=boxes, target_index=target))
    return samples


class GroundingCaptionDataset(MapCaptionDataset):
    """The expressions of the generated grounding scenes as image-caption pairs for ITC + ITM fine-tuning (no boxes):
    one pair per object, `(scene image, its expression)`, with `image_id` = the scene index (the expressions of one
    scene are positives of each other's image). Items are those of `mamo_hf.data.records`; use a held-out `seed`
    for evaluation (`generated_grounding_samples`).

    Args:
        num_scenes (`int`): number of scenes.
        seed (`int`): seed of the scenes.
        image_size (`int`): side of the drawn images, in pixels.
        scene_options: `grounding_scene`'s `min_objects`, `max_objects` and `reserved` (False: never a configuration
            reserved for evaluation).

    Attributes: `scenes` (the `GroundingScene` of each scene index) and `pairs` (the `(scene index, object index)`
    of each item).
    """

    def __init__(self, num_scenes: int, seed: int = 0, image_size: int = 64, **scene_options):
        super().__init__(CaptionOptions(transform=None, max_words=None, strict=True, seed=seed, max_image_pixels=None))
        self.image_size = image_size
        self.scenes = [grounding_scene(seed, index, **scene_options) for index in range(num_scenes)]
        self.pairs = [
            (index, target) for index, scene in enumerate(self.scenes) for target in range(len(scene.objects))
        ]

    def __len__(self) -> int:
        return len(self.pairs)

    def _pair(self, index: int) -> Pair:
        scene_index, target = self.pairs[index]
        scene = self.scenes[scene_index]
        image = draw_scene(scene.objects, self.image_size)
        return Pair(f"grounding scene {scene_index}", image, scene.expressions[target], image_id=scene_index)


class UnambiguousBatchSampler(torch.utils.data.Sampler):
    """Batches of `GroundingCaptionDataset` pairs in which no pair's expression is true of another pair's image.

    In a world of 48 kinds of object, an expression of one scene is often true of another scene too ("the circle"
    of any scene with one circle): 20% of random (expression, other scene) pairs, and more of the hard negatives
    that ITM draws by ITC similarity, which favours texts like the image's own. Those false negatives teach ITM that
    matching expressions do not match, and it stays at the prior (measured: ITM at chance after 4,000 steps of
    ITC + ITM on random batches; it learns within 3,000 on these). Real data is diverse enough that they are rare;
    here each batch is drawn so that there are none: pairs are taken in random order, skipping a pair whose
    expression is true of a scene already in the batch, whose scene an expression in the batch is true of, or whose
    scene is already in the batch. The world runs out of mutually unambiguous scenes after about 20, so a batch may
    hold fewer than `batch_size` pairs.

    Args:
        dataset (`GroundingCaptionDataset`): the pairs.
        batch_size (`int`): pairs per batch, at most.
        num_batches (`int`): batches per iteration.
        seed (`int`): seed of the draws (iterations continue one stream: the same sequence of batches for a seed).
    """

    def __init__(self, dataset: GroundingCaptionDataset, batch_size: int, num_batches: int, seed: int = 0):
        self.batch_size, self.num_batches = batch_size, num_batches
        self.generator = torch.Generator().manual_seed(seed)
        self.scene_of = torch.tensor([scene for scene, _ in dataset.pairs])
        self.true_of = _expressions_true_of_scenes(
            [dataset.scenes[scene].expressions[target] for scene, target in dataset.pairs], dataset.scenes
        )

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self):
        for _ in range(self.num_batches):
            yield self._batch(torch.randperm(len(self.scene_of), generator=self.generator))

    def _batch(self, order: torch.Tensor) -> list[int]:
        """Take pairs in `order`, each time the first one that nothing taken so far rules out."""
        blocked = torch.zeros(len(order), dtype=torch.bool)
        batch = []
        while len(batch) < self.batch_size and not blocked.all():
            pair = int(order[~blocked[order]][0])
            batch.append(pair)
            scene = self.scene_of[pair]
            # Rule out pairs of this scene or true of it, and pairs of the scenes this expression is true of.
            blocked |= (self.scene_of == scene) | self.true_of[:, scene] | self.true_of[pair, self.scene_of]
        return batch


def _expressions_true_of_scenes(expressions: list[str], scenes: list[GroundingScene]) -> torch.Tensor:
    """`[num_expressions, num_scenes]`: `True` where some object of the scene has every attribute the expression
    names. Computed over the 48 kinds of object: (expressions × kinds) · (kinds × scenes) > 0."""
    kind_index = {kind: index for index, kind in enumerate(_OBJECT_KINDS)}
    scene_kinds = torch.zeros(len(scenes), len(_OBJECT_KINDS))
    for row, scene in enumerate(scenes):
        for scene_object in scene.objects:
            scene_kinds[row, kind_index[replace(scene_object, row=0, column=0)]] = 1
    described = torch.tensor(
        [[describes(expression_attributes(text), kind) for kind in _OBJECT_KINDS] for text in expressions]
    )
    return described.float() @ scene_kinds.t() > 0
