"""Built-in demo data: images of coloured shapes with captions that name colour, shape, size and position.

Scenes hold one to three objects on a 3×3 grid of positions, so a caption only matches its own image when colour,
shape, size *and* place are all right: the fine-grained alignment MAMO's objectives are meant to learn. Everything
is generated from a seed, on the fly, with PIL only. `DemoCaptionDataset` serves the pairs as a pre-training dataset
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
    scene = binding_scene(rng, rng.randint(2, max(2, max_objects)))
    attribute = rng.choice(BINDING_ATTRIBUTES)
    return swap_attribute(scene, attribute) if member else scene


def caption(scene: list[SceneObject]) -> str:
    """A caption that names every object's size, colour, shape and position."""
    parts = [scene_object.describe() for scene_object in scene]
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"there is {listed}"


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
    """`num_pairs` (image, caption, scene) triples, the same for the same seed."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(num_pairs):
        scene = random_scene(rng, max_objects)
        pairs.append((draw_scene(scene, image_size), caption(scene), scene))
    return pairs


def demo_scene(seed: int, index: int, max_objects: int = 3) -> list[SceneObject]:
    """Scene `index` of the demo data of `seed`, from its own RNG (seeded by `(seed, index)`), so that any scene can
    be drawn alone: `write_demo_dataset` and `DemoCaptionDataset` with the same seed hold the same pairs."""
    return random_scene(random.Random(f"demo:{seed}:{index}"), max_objects)


def write_demo_dataset(
    folder, num_pairs: int, seed: int = 0, image_size: int = 64, max_objects: int = 3, file_format: str = "json"
) -> Path:
    """Write demo pairs as a caption dataset that `CaptionDataset` reads: PNG images `folder/images/000000.png`, ...
    and an ALBEF-style annotation file with relative image paths, `folder/captions.json` (a JSON list of
    `{"image", "caption"}`) or, with `file_format="jsonl"`, `folder/captions.jsonl` (one object per line).

    The files depend on the arguments only: the same seed writes byte-identical files. Returns the path of the
    annotation file.

    Raises:
        ValueError: for a `file_format` other than "json" and "jsonl".
    """
    if file_format not in ("json", "jsonl"):
        raise ValueError(f"file_format must be 'json' or 'jsonl', got {file_format!r}.")
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    records = []
    for index in range(num_pairs):
        scene = demo_scene(seed, index, max_objects)
        image = f"images/{index:06d}.png"
        draw_scene(scene, image_size).save(folder / image, format="PNG")
        records.append({"image": image, "caption": caption(scene)})
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
    ):
        # Generated pairs are never bad: anything that fails is a bug, so it raises.
        super().__init__(
            CaptionOptions(transform=transform, max_words=max_words, strict=True, seed=seed, max_image_pixels=None)
        )
        self.num_pairs = num_pairs
        self.image_size = image_size
        self.max_objects = max_objects
        self.minimal_pairs = minimal_pairs

    def __len__(self) -> int:
        return self.num_pairs

    def _pair(self, index: int) -> Pair:
        if self.minimal_pairs > 0:
            scene = minimal_pair_scene(self.seed, index, self.max_objects, self.minimal_pairs)
        else:
            scene = demo_scene(self.seed, index, self.max_objects)
        return Pair(f"demo scene {index}", draw_scene(scene, self.image_size), caption(scene), image_id=index)


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
