"""A fine-grained image-text benchmark on generated scenes: captions against hard negatives that differ in binding.

Each scene holds two or three objects from the demo world (`mamo_hf.data.demo`: colour, shape, size, cell). The
first two objects differ in colour, shape and size, so that swapping one attribute between them changes the
caption but leaves its bag of words intact: only a model that binds each attribute to its object can tell the
caption from the negative. Each example has one hard negative of every type:

- `colour`: the colours of two objects swapped ("a red circle ... a blue square" → "a blue circle ... a red square");
- `shape`: their shapes swapped;
- `size`: their sizes swapped;
- `position`: their places swapped (the spatial relation between the two objects inverted);
- `count`: one object left out of the caption (the caption no longer counts every object in the image).

The words and the caption template are those of the demo pre-training data, so a model pre-trained on it is
evaluated zero-shot (`mamo_hf.evaluation.finegrained`). Scenes come from their own seeded RNG per index, so the
benchmark is deterministic from `(seed, index)` and a different seed space from the pre-training scenes.
"""

import random
from dataclasses import dataclass, replace

from PIL import Image

from .demo import COLOURS, SHAPES, SIZES, SceneObject, caption, draw_scene

NEGATIVE_TYPES = ("colour", "shape", "size", "position", "count")


@dataclass(frozen=True)
class FinegrainedExample:
    """One benchmark item: the image, its caption, and one hard-negative caption per type of `NEGATIVE_TYPES`."""

    image: Image.Image
    caption: str
    negatives: dict[str, str]
    scene: tuple[SceneObject, ...]


def finegrained_scene(rng: random.Random, num_objects: int = 2) -> list[SceneObject]:
    """`num_objects` (2 or 3) objects in distinct cells; the first two differ in colour, shape and size."""
    if num_objects not in (2, 3):
        raise ValueError(f"`num_objects` must be 2 or 3, got {num_objects}.")
    cells = rng.sample(range(9), num_objects)
    colours, shapes, sizes = rng.sample(list(COLOURS), 2), rng.sample(SHAPES, 2), rng.sample(list(SIZES), 2)
    scene = [SceneObject(colours[i], shapes[i], sizes[i], cells[i] // 3, cells[i] % 3) for i in range(2)]
    for cell in cells[2:]:
        scene.append(
            SceneObject(rng.choice(list(COLOURS)), rng.choice(SHAPES), rng.choice(list(SIZES)), cell // 3, cell % 3)
        )
    return scene


def swap_attribute(scene: list[SceneObject], attribute: str, first: int = 0, second: int = 1) -> list[SceneObject]:
    """The scene with `attribute` ("colour", "shape", "size" or "position") exchanged between two objects."""
    fields = ("row", "column") if attribute == "position" else (attribute,)
    a, b = scene[first], scene[second]
    swapped = list(scene)
    swapped[first] = replace(a, **{name: getattr(b, name) for name in fields})
    swapped[second] = replace(b, **{name: getattr(a, name) for name in fields})
    return swapped


def hard_negatives(scene: list[SceneObject], rng: random.Random) -> dict[str, str]:
    """One negative caption per type of `NEGATIVE_TYPES` (see the module docstring); `rng` picks the object that
    the `count` negative leaves out."""
    negatives = {name: caption(swap_attribute(scene, name)) for name in ("colour", "shape", "size", "position")}
    dropped = rng.randrange(len(scene))
    negatives["count"] = caption([obj for index, obj in enumerate(scene) if index != dropped])
    return negatives


def finegrained_example(seed: int, index: int, image_size: int = 64, num_objects: int = 2) -> FinegrainedExample:
    """Item `index` of the benchmark of `seed`, drawn from its own RNG."""
    rng = random.Random(f"finegrained:{seed}:{num_objects}:{index}")
    scene = finegrained_scene(rng, num_objects)
    return FinegrainedExample(
        image=draw_scene(scene, image_size),
        caption=caption(scene),
        negatives=hard_negatives(scene, rng),
        scene=tuple(scene),
    )


def finegrained_examples(
    num_examples: int, seed: int = 0, image_size: int = 64, num_objects: int = 2
) -> list[FinegrainedExample]:
    """`num_examples` benchmark items, the same for the same arguments."""
    return [finegrained_example(seed, index, image_size, num_objects) for index in range(num_examples)]


__all__ = [
    "NEGATIVE_TYPES",
    "FinegrainedExample",
    "finegrained_example",
    "finegrained_examples",
    "finegrained_scene",
    "hard_negatives",
    "swap_attribute",
]
