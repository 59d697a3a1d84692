"""Built-in demo data: images of coloured shapes with captions that name colour, shape, size and position.

Scenes hold one to three objects on a 3×3 grid of positions, so a caption only matches its own image when colour,
shape, size *and* place are all right: the fine-grained alignment MAMO's objectives are meant to learn. Everything
is generated from a seed, on the fly, with PIL only.

**Disjoint from the fine-grained benchmark, augmentation included.** Pairs of objects whose configuration, or its
mirror's, is one of the tenth that a hash picks are reserved for the benchmark (`mamo_hf.data.finegrained`;
`mamo_hf.data.reserved` defines them): a reserved pair's objects differ in colour, shape and size, and whether a
pair is reserved depends only on its `reservation_key`, which the pair shares with its horizontal mirror and with
every variant of either that has attributes exchanged between the two objects. Training scenes (`demo_scene`,
`minimal_pair_scene` (both members), `demo_pairs`) are redrawn until no two of their objects are a reserved pair.
Hence, whatever the seeds: no benchmark scene, none of its attribute-swapped variants (the scenes of its swap
negatives) and none of their mirrors is a training scene or two of the three objects of one, before or after
`TrainTransform`, whose flip mirrors a scene (column c → 2 − c) and its caption together, and whose crops rewrite no
caption. What is not excluded, only measured (`benchmarks/benchmark_leak.py`): a benchmark caption that is word for
word the caption of a different training image, which happens for "relation" captions, since they name no cells.

Captions come in templates (`CAPTION_TEMPLATES`): "list" names every object with its place ("there is a large red
circle at the top left and a small blue square at the bottom right"); "relation" relates the first two objects
("a large red circle left of a small blue square"); "attribute" states attributes as predicates ("the red circle is
large and the blue square is small") and is never used for training data: the benchmark uses it to test binding in
a sentence form the model has not seen. `DemoCaptionDataset` serves the pairs as a pre-training dataset
and `write_demo_dataset` writes them as image files and a caption file, the same pairs for the same seed.
"""

import json
import random
from dataclasses import dataclass, replace
from importlib.resources import files
from pathlib import Path

from PIL import Image, ImageDraw
from transformers import BertTokenizer

from ..configuration_mamo import MamoConfig, special_token_ids
from ..image_processing_mamo import MamoImageProcessorPil
from ..processing_mamo import MamoProcessor
from .captions import MapCaptionDataset
from .records import CaptionOptions, Pair
from .reserved import holds_reserved_pair, training_scene

COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 210, 40),
    "purple": (150, 60, 190),
    "orange": (245, 140, 30),
}
SHAPES = ("circle", "square", "triangle", "diamond")
SIZES = {"small": 0.16, "large": 0.28}
ROWS = ("top", "middle", "bottom")
COLUMNS = ("left", "center", "right")


@dataclass(frozen=True)
class SceneObject:
    """One shape: its colour, shape and size names and its cell on the 3×3 grid."""

    colour: str
    shape: str
    size: str
    row: int
    column: int

    @property
    def position(self) -> str:
        """The cell in words: "top left", "middle", "bottom right", ..."""
        row, column = ROWS[self.row], COLUMNS[self.column]
        if row == "middle" and column == "center":
            return "center"
        if column == "center":
            return row
        if row == "middle":
            return column
        return f"{row} {column}"

    def describe(self) -> str:
        """The object in words: "a large red circle at the top left"."""
        return f"a {self.size} {self.colour} {self.shape} at the {self.position}"

    def mirrored(self) -> "SceneObject":
        """The object in a horizontally flipped image: column c → 2 − c, as `TrainTransform`'s flip moves it."""
        return replace(self, column=len(COLUMNS) - 1 - self.column)


def random_scene(rng: random.Random, max_objects: int = 3) -> list[SceneObject]:
    """One to `max_objects` objects in distinct cells."""
    cells = rng.sample(range(9), rng.randint(1, max_objects))
    return [
        SceneObject(rng.choice(list(COLOURS)), rng.choice(SHAPES), rng.choice(list(SIZES)), cell // 3, cell % 3)
        for cell in cells
    ]


BINDING_ATTRIBUTES = ("colour", "shape", "size", "position")


def binding_scene(rng: random.Random, num_objects: int = 2) -> list[SceneObject]:
    """`num_objects` (2 or 3) objects in distinct cells; the first two differ in colour, shape and size, so that
    exchanging any attribute between them (`swap_attribute`) changes what the scene shows."""
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
    """The scene with `attribute` (one of `BINDING_ATTRIBUTES`) exchanged between two objects: the same words, bound
    differently."""
    fields = ("row", "column") if attribute == "position" else (attribute,)
    a, b = scene[first], scene[second]
    swapped = list(scene)
    swapped[first] = replace(a, **{name: getattr(b, name) for name in fields})
    swapped[second] = replace(b, **{name: getattr(a, name) for name in fields})
    return swapped


def minimal_pair_scene(seed: int, index: int, max_objects: int = 3, fraction: float = 1.0) -> list[SceneObject]:
    """Scene `index` of the minimal-pair demo data. With probability `fraction` (drawn per pair), items `2k` and
    `2k + 1` show the same objects except that one attribute is exchanged between two of them, so that their
    captions hold the same words; otherwise (and always when `max_objects < 2`: a swap needs two objects) they are
    two independent demo scenes."""
    pair, member = divmod(index, 2)
    rng = random.Random(f"demo-pair:{seed}:{pair}")
    if max_objects < 2 or rng.random() >= fraction:
        return demo_scene(seed, index, max_objects)
    while True:  # as `training_scene`, for both members: a swap involving a third object changes its pairs
        scene = binding_scene(rng, rng.randint(2, max(2, max_objects)))
        swapped = swap_attribute(scene, rng.choice(BINDING_ATTRIBUTES))
        if not (holds_reserved_pair(scene) or holds_reserved_pair(swapped)):
            return swapped if member else scene


def _listed(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def caption(scene: list[SceneObject]) -> str:
    """The "list" caption: every object's size, colour, shape and position."""
    return "there is " + _listed([scene_object.describe() for scene_object in scene])


def relation(first: SceneObject, second: SceneObject) -> str:
    """Where `first` is from `second`: "left of" or "right of" when their columns differ, else "above" or "below"."""
    if first.column != second.column:
        return "left of" if first.column < second.column else "right of"
    return "above" if first.row < second.row else "below"


def relation_caption(scene: list[SceneObject]) -> str:
    """The "relation" caption: the first two objects related ("a large red circle left of a small blue square"),
    further objects listed with their positions; a single object as in `caption`."""
    if len(scene) < 2:
        return caption(scene)
    first, second, *others = scene
    unplaced = [f"a {obj.size} {obj.colour} {obj.shape}" for obj in (first, second)]
    related = f"{unplaced[0]} {relation(first, second)} {unplaced[1]}"
    return _listed([related, *(obj.describe() for obj in others)])


def attribute_caption(scene: list[SceneObject]) -> str:
    """The "attribute" caption, held out of training data: sizes stated as predicates of colour-shape phrases ("the
    red circle is large and the blue square is small")."""
    return _listed([f"the {obj.colour} {obj.shape} is {obj.size}" for obj in scene])


# Caption templates by name; "attribute" is for evaluation only (see the module docstring).
CAPTION_TEMPLATES = {"list": caption, "relation": relation_caption, "attribute": attribute_caption}
TRAINING_TEMPLATES = ("list", "relation")


def scene_caption(scene: list[SceneObject], templates: tuple[str, ...], seed: int, index: int) -> str:
    """The caption of demo scene `index` in one of `templates`, chosen by `(seed, index)`."""
    template = templates[0] if len(templates) == 1 else random.Random(f"template:{seed}:{index}").choice(templates)
    return CAPTION_TEMPLATES[template](scene)


def draw_scene(scene: list[SceneObject], image_size: int = 64, background=(245, 245, 240)) -> Image.Image:
    """Render a scene as an RGB image."""
    image = Image.new("RGB", (image_size, image_size), background)
    draw = ImageDraw.Draw(image)
    cell = image_size / 3
    for scene_object in scene:
        centre_x, centre_y = (scene_object.column + 0.5) * cell, (scene_object.row + 0.5) * cell
        radius = SIZES[scene_object.size] * image_size / 2 * 1.0
        box = (centre_x - radius, centre_y - radius, centre_x + radius, centre_y + radius)
        fill = COLOURS[scene_object.colour]
        if scene_object.shape == "circle":
            draw.ellipse(box, fill=fill)
        elif scene_object.shape == "square":
            draw.rectangle(box, fill=fill)
        elif scene_object.shape == "triangle":
            draw.polygon([(centre_x, box[1]), (box[0], box[3]), (box[2], box[3])], fill=fill)
        else:
            draw.polygon([(centre_x, box[1]), (box[2], centre_y), (centre_x, box[3]), (box[0], centre_y)], fill=fill)
    return image


def demo_pairs(num_pairs: int, seed: int = 0, image_size: int = 64, max_objects: int = 3):
    """`num_pairs` (image, caption, scene) triples, the same for the same seed (no scene holds a reserved pair)."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(num_pairs):
        scene = training_scene(lambda draw: random_scene(draw, max_objects), rng)
        pairs.append((draw_scene(scene, image_size), caption(scene), scene))
    return pairs


def demo_scene(seed: int, index: int, max_objects: int = 3) -> list[SceneObject]:
    """Scene `index` of the demo data of `seed`, from its own RNG (seeded by `(seed, index)`), so that any scene can
    be drawn alone: `write_demo_dataset` and `DemoCaptionDataset` with the same seed hold the same pairs. No two of
    its objects are a pair reserved for evaluation (`training_scene`)."""
    return training_scene(lambda rng: random_scene(rng, max_objects), random.Random(f"demo:{seed}:{index}"))


def write_demo_dataset(folder, num_pairs: int, file_format: str = "json", **scenes) -> Path:
    """Write the pairs of `DemoCaptionDataset(num_pairs, **scenes)` as a caption dataset that `CaptionDataset` reads:
    PNG images `folder/images/000000.png`, ... and an ALBEF-style annotation file with relative image paths,
    `folder/captions.json` (a JSON list of `{"image", "caption"}`) or, with `file_format="jsonl"`,
    `folder/captions.jsonl` (one object per line).

    `scenes` are `DemoCaptionDataset`'s arguments (`seed`, `image_size`, `max_objects`, `minimal_pairs`,
    `templates`), so that the files hold exactly the pairs the dataset serves for them, byte-identical for the same
    arguments. Returns the path of the annotation file.

    Raises:
        ValueError: for a `file_format` other than "json" and "jsonl", or templates outside `TRAINING_TEMPLATES`.
    """
    if file_format not in ("json", "jsonl"):
        raise ValueError(f"file_format must be 'json' or 'jsonl', got {file_format!r}.")
    dataset = DemoCaptionDataset(num_pairs, **scenes)
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    records = []
    for index in range(num_pairs):
        pair = dataset.scene_pair(index)
        image = f"images/{index:06d}.png"
        pair.image.save(folder / image, format="PNG")
        records.append({"image": image, "caption": pair.caption})
    annotation_file = folder / f"captions.{file_format}"
    if file_format == "json":
        annotation_file.write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")
    else:
        annotation_file.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return annotation_file


class DemoCaptionDataset(MapCaptionDataset):
    """The demo pairs as a map-style pre-training dataset, drawn on the fly (no files): item `index` is the scene
    `demo_scene(seed, index, max_objects)`, so items are deterministic per index, and a held-out split is another
    seed. The default pre-training data when none is given.

    Args:
        num_pairs (`int`): number of pairs.
        seed (`int`): seed of the scenes, and of the augmentation randomness.
        image_size (`int`): side of the drawn images, in pixels.
        max_objects (`int`): at most this many objects per scene.
        transform (*optional*): as for `CaptionDataset` (e.g. `TrainTransform`); None for no augmentation.
        max_words (`int`, *optional*): captions are cut to this many words.
        minimal_pairs (`float`): the fraction of `minimal_pair_scene`s (0: plain demo scenes): items `2k` and
            `2k + 1` then differ only in which object has which attribute. Batched together (`block_size=2` of the
            training sampler), each is the other's hard negative, a signal that only binding can fit.
        templates (`tuple[str, ...]`): caption templates of `TRAINING_TEMPLATES`, one chosen per item.

    Items are those of `mamo_hf.data.records` (`image`, `caption`, `image_id` = the index, `skipped` = ()).
    """

    def __init__(
        self,
        num_pairs: int,
        seed: int = 0,
        image_size: int = 64,
        max_objects: int = 3,
        transform=None,
        max_words: int | None = 30,
        minimal_pairs: float = 0.0,
        templates: tuple[str, ...] = ("list",),
    ):
        check_training_templates(templates)
        # Generated pairs are never bad: anything that fails is a bug, so it raises.
        super().__init__(
            CaptionOptions(transform=transform, max_words=max_words, strict=True, seed=seed, max_image_pixels=None)
        )
        self.num_pairs = num_pairs
        self.image_size = image_size
        self.max_objects = max_objects
        self.minimal_pairs = minimal_pairs
        self.templates = tuple(templates)

    def __len__(self) -> int:
        return self.num_pairs

    def _pair(self, index: int) -> Pair:
        return self.scene_pair(index)

    def scene_pair(self, index: int) -> Pair:
        """Pair `index` before it becomes an item: the drawn scene and its caption (what `write_demo_dataset`
        writes)."""
        if self.minimal_pairs > 0:
            scene = minimal_pair_scene(self.seed, index, self.max_objects, self.minimal_pairs)
        else:
            scene = demo_scene(self.seed, index, self.max_objects)
        text = scene_caption(scene, self.templates, self.seed, index)
        return Pair(f"demo scene {index}", draw_scene(scene, self.image_size), text, image_id=index)


def check_training_templates(templates: tuple[str, ...]) -> None:
    """Raise a `ValueError` unless `templates` is a non-empty selection of `TRAINING_TEMPLATES`."""
    if not templates or not set(templates) <= set(TRAINING_TEMPLATES):
        raise ValueError(
            f'Demo caption templates must be some of {TRAINING_TEMPLATES} ("attribute" is reserved for evaluation), '
            f"got {tuple(templates)}."
        )


def demo_tokenizer() -> BertTokenizer:
    """The BERT tokenizer for the demo captions: a real `BertTokenizer` over the package's small vocabulary."""
    tokens = (files("mamo_hf.data") / "demo_vocab.txt").read_text().split()
    # transformers v5 builds `BertTokenizer` from a vocab dict (`vocab_file` only works through from_pretrained).
    return BertTokenizer(vocab={token: index for index, token in enumerate(tokens)})


def processor_for_config(config: MamoConfig, tokenizer) -> MamoProcessor:
    """The `MamoProcessor` of a newly built `config`: `tokenizer`, truncating captions to the text encoder's positions,
    and a PIL image processor at the image encoder's `image_size`."""
    size = config.vision_config.image_size
    tokenizer.model_max_length = min(tokenizer.model_max_length, config.text_config.max_position_embeddings)
    return MamoProcessor(
        image_processor=MamoImageProcessorPil(size={"height": size, "width": size}), tokenizer=tokenizer
    )


def tiny_config_and_processor(
    image_size: int = 32, patch_size: int = 8, tokenizer=None, **config_overrides
) -> tuple[MamoConfig, MamoProcessor]:
    """A tiny MAMO for demos, examples and tests: `MamoConfig.tiny` sized for `tokenizer` (its vocabulary and special
    tokens; the demo tokenizer by default) at `image_size` px in patches of `patch_size`, and its processor
    (`processor_for_config`). `config_overrides` go to `MamoConfig.tiny` (top-level fields, e.g. `queue_size=64`).
    """
    tokenizer = tokenizer if tokenizer is not None else demo_tokenizer()
    config = MamoConfig.tiny(
        vocab_size=len(tokenizer),
        special_token_ids=special_token_ids(tokenizer),
        image_size=image_size,
        patch_size=patch_size,
        **config_overrides,
    )
    return config, processor_for_config(config, tokenizer)
