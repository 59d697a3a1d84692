"""A fine-grained image-text benchmark on generated scenes: captions against hard negatives that differ in binding.

Each scene holds two or three objects from the demo world (`mamo_hf.data.demo`: colour, shape, size, cell). The
first two objects differ in colour, shape and size, so that exchanging one attribute between them changes the
caption but leaves its bag of words intact: only a model that binds each attribute to its object can tell the
caption from the negative.

**Disjoint from training by construction, augmentation included.** The first two objects of every benchmark scene
are a benchmark pair (`mamo_hf.data.reserved.is_evaluation_scene`), hence a reserved pair; a reserved pair's
horizontal mirror and its variants with attributes exchanged between the two objects are reserved too, and the demo
world's training generators never draw a scene in which any two objects are a reserved pair. So, with
`TrainTransform` on (its flip mirrors the image and swaps "left" and "right" in the caption; its crops rewrite no
caption), no benchmark pair, none of its swapped variants (the scenes of the `colour`, `shape`, `size`, `position`
and `relation` negatives) and none of their mirrors is ever shown in training, as a whole scene or as two of the
three objects of one. For a seed, the 2-object scenes are those of earlier versions (the reservation now covers
mirrors and sub-scenes, and still holds every earlier benchmark pair); in a 3-object scene the first two objects
are a benchmark pair and the third is free.

The guarantee is about scenes. Caption overlaps are only measured (`benchmarks/benchmark_leak.py`): a "relation"
caption names no cells, so one sentence is the caption of many images, and many benchmark "relation" captions are
word for word the caption of some training image of other cells, as are its "relation" negatives, about as often;
the `count` negative of a two-object scene names one object, a scene every training run shows.

**Templates.** The caption and its negatives use one caption template (`mamo_hf.data.demo.CAPTION_TEMPLATES`), each
with its negative types (`TEMPLATE_NEGATIVES`):

- "list" ("there is a large red circle at the top left and ..."), seen in training: the `colour`, `shape`, `size`
  and `position` of the first two objects exchanged, and `count`, one object left out;
- "relation" ("a large red circle left of a small blue square"), seen in training: `colour`, `shape`, `size`
  exchanged, and `relation`, the two objects' places exchanged (the relation inverted);
- "attribute" ("the red circle is large and the blue square is small"), **never in training data**: `colour`,
  `shape` and `size` exchanged; binding in a sentence form the model has not seen, not template memory.

A model scores the true caption against `len(TEMPLATE_NEGATIVES[template])` negatives: chance for "the caption beats
every negative" is `1 / (1 + that number)`: 1/6 for "list", 1/5 for "relation", 1/4 for "attribute"; for one type,
50 % (`mamo_hf.evaluation.finegrained`). Examples come from their own seeded RNG per index: deterministic from
`(seed, index, template)`.
"""

import random
from dataclasses import dataclass

from PIL import Image

from .demo import CAPTION_TEMPLATES, SceneObject, binding_scene, draw_scene, swap_attribute
from .reserved import is_evaluation_scene

TEMPLATE_NEGATIVES = {
    "list": ("colour", "shape", "size", "position", "count"),
    "relation": ("colour", "shape", "size", "relation"),
    "attribute": ("colour", "shape", "size"),
}
NEGATIVE_TYPES = TEMPLATE_NEGATIVES["list"]


@dataclass(frozen=True)
class FinegrainedExample:
    """One benchmark item: the image, its caption, one hard-negative caption per type of its template, the scene."""

    image: Image.Image
    caption: str
    negatives: dict[str, str]
    scene: tuple[SceneObject, ...]
    template: str = "list"


def chance_accuracy(template: str) -> float:
    """The chance (%) that the true caption scores highest among itself and the template's negatives."""
    return 100.0 / (1 + len(TEMPLATE_NEGATIVES[template]))


def hard_negatives(scene: list[SceneObject], rng: random.Random, template: str = "list") -> dict[str, str]:
    """One negative caption per type of `TEMPLATE_NEGATIVES[template]` (see the module docstring); `rng` picks the
    object that the `count` negative leaves out."""
    render = CAPTION_TEMPLATES[template]
    negatives = {}
    for kind in TEMPLATE_NEGATIVES[template]:
        if kind == "count":
            dropped = rng.randrange(len(scene))
            negatives[kind] = render([obj for index, obj in enumerate(scene) if index != dropped])
        else:
            negatives[kind] = render(swap_attribute(scene, "position" if kind == "relation" else kind))
    return negatives


def evaluation_scene(rng: random.Random, num_objects: int) -> list[SceneObject]:
    """A `binding_scene` whose first two objects are a benchmark pair (`is_evaluation_scene`)."""
    scene = binding_scene(rng, num_objects)
    while not is_evaluation_scene(scene):
        scene = binding_scene(rng, num_objects)
    return scene


def finegrained_example(
    seed: int, index: int, image_size: int = 64, num_objects: int = 2, template: str = "list"
) -> FinegrainedExample:
    """Item `index` of the benchmark of `seed` in `template`, drawn from its own RNG."""
    if template not in TEMPLATE_NEGATIVES:
        raise ValueError(f"Unknown benchmark template {template!r}; known: {tuple(TEMPLATE_NEGATIVES)}.")
    rng = random.Random(f"finegrained:{seed}:{num_objects}:{index}")
    scene = evaluation_scene(rng, num_objects)
    return FinegrainedExample(
        image=draw_scene(scene, image_size),
        caption=CAPTION_TEMPLATES[template](scene),
        negatives=hard_negatives(scene, rng, template),
        scene=tuple(scene),
        template=template,
    )


def finegrained_examples(
    num_examples: int, seed: int = 0, image_size: int = 64, num_objects: int = 2, template: str = "list"
) -> list[FinegrainedExample]:
    """`num_examples` benchmark items in `template`, the same for the same arguments (the same scenes whatever the
    template)."""
    return [finegrained_example(seed, index, image_size, num_objects, template) for index in range(num_examples)]


__all__ = [
    "NEGATIVE_TYPES",
    "TEMPLATE_NEGATIVES",
    "FinegrainedExample",
    "chance_accuracy",
    "finegrained_example",
    "finegrained_examples",
    "hard_negatives",
]
