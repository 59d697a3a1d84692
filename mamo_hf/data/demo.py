"""Built-in demo data: images of coloured shapes with captions that name colour, shape, size and position.

Scenes hold one to three objects on a 3×3 grid of positions, so a caption only matches its own image when colour,
shape, size *and* place are all right: the fine-grained alignment MAMO's objectives are meant to learn. Everything
is generated from a seed, on the fly, with PIL only.
"""

import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

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
        return f"a {self.size} {self.colour} {self.shape} at the {self.position}"


def random_scene(rng: random.Random, max_objects: int = 3) -> list[SceneObject]:
    """One to `max_objects` objects in distinct cells."""
    cells = rng.sample(range(9), rng.randint(1, max_objects))
    return [
        SceneObject(rng.choice(list(COLOURS)), rng.choice(SHAPES), rng.choice(list(SIZES)), cell // 3, cell % 3)
        for cell in cells
    ]


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


def demo_tokenizer():
    """The BERT tokenizer for the demo captions: a real `BertTokenizer` over the package's small vocabulary."""
    from importlib.resources import files

    from transformers import BertTokenizer

    tokens = (files("mamo_hf.data") / "demo_vocab.txt").read_text().split()
    # transformers v5 builds `BertTokenizer` from a vocab dict (`vocab_file` only works through from_pretrained).
    return BertTokenizer(vocab={token: index for index, token in enumerate(tokens)})
