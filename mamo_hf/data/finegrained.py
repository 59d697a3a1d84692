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
from dataclasses import dataclass

from PIL import Image

from .demo import BINDING_ATTRIBUTES, SceneObject, binding_scene, caption, draw_scene, swap_attribute

NEGATIVE_TYPES = (*BINDING_ATTRIBUTES, "count")


@dataclass(frozen=True)
class FinegrainedExample:
    """One benchmark item: the image, its caption, and one hard-negative caption per type of `NEGATIVE_TYPES`."""

    image: Image.Image
    caption: str
    negatives: dict[str, str]
    scene: tuple[SceneObject, ...]


def hard_negatives(scene: list[SceneObject], rng: random.Random) -> dict[str, str]:
    """One negative caption per type of `NEGATIVE_TYPES` (see the module docstring); `rng` picks the object that
    the `count` negative leaves out."""
    negatives = {name: caption(swap_attribute(scene, name)) for name in BINDING_ATTRIBUTES}
    dropped = rng.randrange(len(scene))
    negatives["count"] = caption([obj for index, obj in enumerate(scene) if index != dropped])
    return negatives


def finegrained_example(seed: int, index: int, image_size: int = 64, num_objects: int = 2) -> FinegrainedExample:
    """Item `index` of the benchmark of `seed`, drawn from its own RNG."""
    rng = random.Random(f"finegrained:{seed}:{num_objects}:{index}")
    scene = binding_scene(rng, num_objects)
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
    "hard_negatives",
]
