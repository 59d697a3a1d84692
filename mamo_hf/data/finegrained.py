"""A fine-grained image-text benchmark on generated scenes: captions against hard negatives that differ in binding.

Each scene holds two or three objects from the demo world (`mamo_hf.data.demo`: colour, shape, size, cell). The
first two objects differ in colour, shape and size, so that exchanging one attribute between them changes the
caption but leaves its bag of words intact: only a model that binds each attribute to its object can tell the
caption from the negative.

**Disjoint from training by construction.** Every benchmark scene is drawn from the configurations that the demo
world reserves for evaluation (`mamo_hf.data.demo.is_evaluation_scene`), which the training generators never
produce; since exchanging attributes keeps a scene's configuration, no negative's scene is a training scene either.

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

from .demo import CAPTION_TEMPLATES, SceneObject, binding_scene, draw_scene, is_evaluation_scene, swap_attribute

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
    """A `binding_scene` of a configuration reserved for evaluation."""
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
