"""Per-patch labels of demo scenes for dense probes: what covers each patch of an image, from the generator's geometry.

A dense probe (`mamo_hf.evaluation.dense_probe`) asks whether an image encoder's patch states tell what lies in each
patch. Its labels come from the scene itself, not from a model: `object_map` draws every object of the scene alone
with `mamo_hf.data.demo.draw_scene` (so the geometry is the generator's by construction, pixel for pixel, including
the order in which later objects cover earlier ones), and `patch_labels` reads the patch grid off that map.

**The rule.** A patch takes the attribute of the object that covers most of its pixels, provided that object covers
at least `min_coverage` of them; otherwise it is background (label 0). Two tasks (`DENSE_TASKS`): the object's colour
(background + 6 colours: 7 classes) and its shape (background + 4 shapes: 5 classes). The default `min_coverage` is a
tenth of the patch (26 of the 256 pixels of a 16 px patch): at 64 px in 16 px patches a small object is about 10 px
wide and is always split between patches, so under a majority rule (half the patch) no small object would label any
patch and only 4 % of patches would be foreground; at a tenth, every large object and 95 % of small ones label at
least one patch, and about a quarter of the patches are foreground (measured on 300 demo scenes).

**Scenes** (`dense_probe_scenes`): the probe is fitted on demo training scenes (`demo_scene`) and scored on scenes of
the configurations reserved for evaluation (`mamo_hf.data.finegrained.evaluation_scene`), which no training generator
produces (`is_evaluation_scene`): the two sets, and pre-training, are disjoint by construction.
"""

import random

import numpy
import torch

from .demo import COLOURS, SHAPES, SceneObject, demo_scene, draw_scene
from .finegrained import evaluation_scene

DENSE_TASKS = {"colour": ("background", *COLOURS), "shape": ("background", *SHAPES)}
DEFAULT_MIN_COVERAGE = 0.1
_BACKGROUND = (245, 245, 240)


def object_map(scene: list[SceneObject], image_size: int = 64) -> torch.Tensor:
    """`[image_size, image_size]` long: at each pixel the index in `scene` of the object `draw_scene` paints there
    (the last one drawn where several would), -1 for background. Each object is drawn alone by `draw_scene`."""
    owner = torch.full((image_size, image_size), -1, dtype=torch.long)
    for index, scene_object in enumerate(scene):
        pixels = torch.from_numpy(numpy.array(draw_scene([scene_object], image_size, _BACKGROUND)))
        painted = (pixels != torch.tensor(_BACKGROUND, dtype=torch.uint8)).any(dim=-1)
        owner[painted] = index
    return owner


def patch_labels(
    scene: list[SceneObject], image_size: int = 64, patch_size: int = 16, min_coverage: float = DEFAULT_MIN_COVERAGE
) -> dict[str, torch.Tensor]:
    r"""The label of every patch for each task of `DENSE_TASKS`: `{"colour": [grid, grid], "shape": [grid, grid]}`
    (long; 0 = background, else 1 + the index of the attribute in `COLOURS` or `SHAPES`), row-major as the image
    encoder's patches.

    With `c[o, p]` the share of patch `p`'s pixels that object `o` covers (`object_map`), patch `p` is labelled by
    `o* = argmax_o c[o, p]` if `c[o*, p] ≥ min_coverage`, else background (see the module docstring).
    """
    if image_size % patch_size:
        raise ValueError(f"image_size {image_size} is not a multiple of patch_size {patch_size}.")
    if not 0 < min_coverage <= 1:
        raise ValueError(f"min_coverage must be in (0, 1], got {min_coverage}.")
    grid = image_size // patch_size
    owner = object_map(scene, image_size).view(grid, patch_size, grid, patch_size)
    shares = [(owner == index).float().mean(dim=(1, 3)) for index in range(len(scene))]
    # Entry 0 stands for "no object" (share 0, label background), so that a scene without objects works too.
    share, dominant = torch.stack([torch.zeros(grid, grid), *shares]).max(dim=0)
    labels = {}
    for task, classes in DENSE_TASKS.items():
        attribute = torch.tensor([0, *(classes.index(getattr(scene_object, task)) for scene_object in scene)])
        labels[task] = torch.where(share >= min_coverage, attribute[dominant], 0)
    return labels


def dense_probe_scenes(num_scenes: int, seed: int, reserved: bool, max_objects: int = 3) -> list[list[SceneObject]]:
    """`num_scenes` scenes of `seed` for a dense probe: demo training scenes (`demo_scene(seed, index)`, one to
    `max_objects` objects, never a reserved configuration) when `reserved` is False; scenes of configurations
    reserved for evaluation (two to `max_objects` objects, `evaluation_scene`) when it is True."""
    if reserved and not 2 <= max_objects <= 3:
        raise ValueError(f"Reserved scenes hold 2 or 3 objects: max_objects must be 2 or 3, got {max_objects}.")
    if not reserved:
        return [demo_scene(seed, index, max_objects) for index in range(num_scenes)]
    scenes = []
    for index in range(num_scenes):
        rng = random.Random(f"dense:{seed}:{index}")
        scenes.append(evaluation_scene(rng, rng.randint(2, max_objects)))
    return scenes


__all__ = ["DENSE_TASKS", "dense_probe_scenes", "object_map", "patch_labels"]
