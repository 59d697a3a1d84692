"""The demo world's configurations reserved for the fine-grained benchmark, and the rule that keeps training off them.

**What is reserved.** Reservation is decided per *pair* of objects, since the benchmark tests the binding between two
objects. A pair's `configuration_key` is what it shows up to which object has which attribute: the sorted colours,
shapes, sizes and cells of its two objects, the same for the pair and every variant of it with attributes exchanged
(`swap_attribute`). A pair is reserved (`is_reserved_pair`) when its two objects differ in colour, shape and size
(the benchmark's pairs) and the key of the pair, or of its horizontal mirror (`mirror_scene`: column c → 2 − c),
falls in the share `1 / EVALUATION_SHARE` of keys that a hash picks, the same in every process. So the reservation
depends only on `reservation_key`, which a pair, its mirror and all their attribute-swapped variants share.

**Who uses it.**

- The benchmark (`mamo_hf.data.finegrained`) draws scenes whose first two objects have a key in that share
  (`is_evaluation_scene`): always a reserved pair. (It draws from the un-mirrored keys only, so that its scenes for
  a seed are those of earlier versions.)
- Training generators draw scenes through `training_scene`, which redraws until no two objects of the scene are a
  reserved pair (`holds_reserved_pair`).

**What that guarantees.** No training scene, no 2-object sub-scene of one, and none of their attribute-swapped
variants is a benchmark pair, and the same holds for their horizontal mirrors: the flip of `TrainTransform` mirrors
the image (column c → 2 − c) and swaps "left" and "right" in the caption (`mirror_caption`), so a flipped scene is
the mirror of a scene with no reserved pair, which has none either. The flip is the only augmentation that rewrites
a caption. The crop rewrites none, and caption-safe crops (the default, and the only ones a demo caption gets, since
every demo caption names a size) keep each object in its cell; with `--no-caption-safe-crops` a strong crop can
move an object to another cell of the image while the caption names the first one, a case not covered here.
`clean_caption` only normalises (a demo caption has at most 27 words, under the default cut of 30), and caption
hard negatives are negatives, never a positive caption. Caption overlaps without a shared scene (a "relation"
caption names no cells, so one sentence is true of many scenes) are not excluded; `benchmarks/benchmark_leak.py`
measures them.
"""

import hashlib
from itertools import combinations

# One pair configuration in this many (by `configuration_key`) is a benchmark configuration (`is_evaluation_scene`).
EVALUATION_SHARE = 10


def configuration_key(scene: list) -> tuple:
    """What a scene shows up to which object has which attribute: the sorted colours, shapes, sizes and cells. Every
    `swap_attribute` variant of a scene has its key."""
    return (
        tuple(sorted(obj.colour for obj in scene)),
        tuple(sorted(obj.shape for obj in scene)),
        tuple(sorted(obj.size for obj in scene)),
        tuple(sorted((obj.row, obj.column) for obj in scene)),
    )


def mirror_scene(scene: list) -> list:
    """The scene flipped horizontally, as `TrainTransform`'s flip shows it (`SceneObject.mirrored`)."""
    return [obj.mirrored() for obj in scene]


def reservation_key(scene: list) -> tuple:
    """The configuration keys of the scene and of its mirror, sorted (one key when the mirror has the same): the same
    for a scene, its mirror and every attribute-swapped variant of either."""
    return tuple(sorted({configuration_key(scene), configuration_key(mirror_scene(scene))}))


def _in_share(key: tuple) -> bool:
    digest = hashlib.blake2b(repr(key).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % EVALUATION_SHARE == 0


def _differ_in_every_attribute(first, second) -> bool:
    return first.colour != second.colour and first.shape != second.shape and first.size != second.size


def is_evaluation_scene(scene: list) -> bool:
    """Whether the first two objects of a scene are a benchmark pair: they differ in colour, shape and size and their
    `configuration_key` is in the reserved share. A benchmark pair is always a reserved pair (`is_reserved_pair`)."""
    if len(scene) < 2 or not _differ_in_every_attribute(scene[0], scene[1]):
        return False
    return _in_share(configuration_key(scene[:2]))


def is_reserved_pair(first, second) -> bool:
    """Whether two objects are a pair that training never shows: they differ in colour, shape and size, and the key
    of the pair or of its mirror is in the reserved share (a function of `reservation_key`)."""
    if not _differ_in_every_attribute(first, second):
        return False
    return any(_in_share(key) for key in reservation_key([first, second]))


def holds_reserved_pair(scene: list) -> bool:
    """Whether any two objects of the scene are a reserved pair (`is_reserved_pair`)."""
    return any(is_reserved_pair(first, second) for first, second in combinations(scene, 2))


def training_scene(draw, rng) -> list:
    """`draw(rng)` again until no two objects of the scene are a reserved pair."""
    scene = draw(rng)
    while holds_reserved_pair(scene):
        scene = draw(rng)
    return scene
