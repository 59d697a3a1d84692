"""Captions and training augmentation for the pre-training datasets.

`clean_caption` normalises every caption before it becomes an item. `TrainTransform` is the pre-training
augmentation, a random resized crop and a horizontal flip; the flip goes with `mirror_caption`, which swaps "left"
and "right" where they name a side (not the verb in "the man left the room", nor "right next to"), so that the
caption stays true of the flipped image, and a caption that says where things are in
the frame or how big they look (`states_frame`) gets only a mild crop that keeps it true. A transform is called as
`transform(image, caption, rng) -> (image, caption)` with a `random.Random` of its own per item
(`mamo_hf.data.records.ItemBuilder`), so that augmentation does not depend on worker scheduling.
"""

import math
import random
import re

from PIL import Image, ImageOps

from .sides import names_a_side

_PUNCTUATION = re.compile(r"[^\w\s'-]")
_LEFT_OR_RIGHT = re.compile(r"\b(left|right)\b", re.IGNORECASE)
_MIRRORED_WORDS = {"left": "right", "right": "left"}
# The word just before a match (only whitespace between), and the word or hyphenated tail just after it.
_WORD_BEFORE = re.compile(r"([A-Za-z]+(?:'[A-Za-z]+)?)\s+$")
_WORD_AFTER = re.compile(r"\s+([A-Za-z]+)|(-[A-Za-z]+)")
# "he's left" is "he has left"; "the man's left hand" is a possessive.
_PRONOUNS_WITH_S = frozenset("he she it that there who what".split())
# Words that place an object in the frame or size it: a strong crop moves objects across the frame and zooms them.
FRAME_WORDS = frozenset(
    "left right top bottom middle center centre corner upper lower edge side small large big little tiny huge".split()
)
_WORDS = re.compile(r"[a-z]+")


def clean_caption(text: str | None, max_words: int | None = 30) -> str:
    """Normalise a caption: lowercase, punctuation other than apostrophes and hyphens replaced by spaces, runs of
    whitespace collapsed, stripped, and cut to the first `max_words` words (all words when `max_words` is None).

    Returns "" for None or a blank caption.

    Example: `clean_caption("A dog's  LEFT-hand paw, raised!")` is `"a dog's left-hand paw raised"`.
    """
    if text is None:
        return ""
    words = _PUNCTUATION.sub(" ", text.lower()).split()
    return " ".join(words[:max_words])


def _neighbours(match: re.Match) -> tuple[str | None, str | None]:
    """The words before and after a match, None where punctuation or the caption's end comes first."""
    before = _WORD_BEFORE.search(match.string, 0, match.start())
    after = _WORD_AFTER.match(match.string, match.end())
    previous = before.group(1).lower() if before else None
    if previous and previous.endswith("'s"):
        previous = "has" if previous[:-2] in _PRONOUNS_WITH_S else "his"
    return previous, (after.group(1) or after.group(2)) if after else None


def _mirror_word(match: re.Match) -> str:
    word = match.group(0)
    if not names_a_side(word, *_neighbours(match)):
        return word
    mirrored = _MIRRORED_WORDS[word.lower()]
    if word.isupper():
        return mirrored.upper()
    return mirrored.capitalize() if word[0].isupper() else mirrored


def states_frame(caption: str) -> bool:
    """Whether a caption names a place in the frame or a size (`FRAME_WORDS`), which a strong crop can make false."""
    return not FRAME_WORDS.isdisjoint(_WORDS.findall(caption.lower()))


def mirror_caption(text: str) -> str:
    """Swap the whole words "left" and "right" where they name a side (`mamo_hf.data.sides.names_a_side`; case kept:
    "Left" → "Right", "LEFT" → "RIGHT"), so that a caption stays true of a horizontally flipped image. "left-hand"
    becomes "right-hand"; "leftover", "bright", the verb in "the man left the room" and "right next to" stay."""
    return _LEFT_OR_RIGHT.sub(_mirror_word, text)


class TrainTransform:
    """Pre-training augmentation: a random resized crop to `image_size` × `image_size`, then a horizontal flip that
    swaps "left" and "right" in the caption, so that the flip never contradicts it.

    The crop follows ALBEF / torchvision's `RandomResizedCrop`: an area of `scale` times the image's area and an
    aspect ratio in [3/4, 4/3] (log-uniform), resized with bicubic filtering; PIL only, no torchvision. A crop of half
    the image can move an object "at the top left" to the middle, or make a "small" one fill the frame; with
    `caption_safe`, a caption that names places or sizes (`states_frame`) gets a crop of `safe_scale` (90–100 % of
    the area) with an aspect ratio within 5 % of the image's, which moves every point by at most about 5 % of the
    side: objects stay in their third of the frame, and their sizes relative to it barely change. Relations between
    objects ("left of", "above") survive any crop.

    Args:
        image_size (`int`): side of the square output image, in pixels.
        scale (`tuple[float, float]`): range of the crop's area as a fraction of the image's area, in (0, 1].
        flip_probability (`float`): probability of the horizontal flip.
        caption_safe (`bool`): mild crops for captions that name places or sizes (see above).
        safe_scale (`tuple[float, float]`): the area range of those crops.

    Raises:
        ValueError: for a non-positive `image_size`, a `scale` outside (0, 1] or decreasing, or a probability outside
            [0, 1].
    """

    ASPECT_RATIOS = (3 / 4, 4 / 3)
    SAFE_ASPECT_RATIOS = (1 / 1.05, 1.05)
    ATTEMPTS = 10

    def __init__(
        self,
        image_size: int,
        scale: tuple[float, float] = (0.5, 1.0),
        flip_probability: float = 0.5,
        caption_safe: bool = True,
        safe_scale: tuple[float, float] = (0.9, 1.0),
    ):
        if image_size <= 0:
            raise ValueError(f"TrainTransform: image_size must be positive, got {image_size}.")
        for name, value in (("scale", scale), ("safe_scale", safe_scale)):
            if not 0 < value[0] <= value[1] <= 1:
                raise ValueError(f"TrainTransform: {name} must be (low, high) with 0 < low <= high <= 1, got {value}.")
        if not 0 <= flip_probability <= 1:
            raise ValueError(f"TrainTransform: flip_probability must be in [0, 1], got {flip_probability}.")
        self.image_size = image_size
        self.scale = tuple(scale)
        self.flip_probability = flip_probability
        self.caption_safe = caption_safe
        self.safe_scale = tuple(safe_scale)

    def __call__(self, image: Image.Image, caption: str, rng: random.Random) -> tuple[Image.Image, str]:
        """Augment one pair with the randomness of `rng` (crop first, then flip). Returns `(image, caption)`: an
        `image_size` × `image_size` image in `image`'s mode, and the caption, mirrored when the image was flipped."""
        mild = self.caption_safe and states_frame(caption)
        box = self.crop_box(image.width, image.height, rng, mild)
        image = image.resize((self.image_size, self.image_size), Image.Resampling.BICUBIC, box=box)
        if rng.random() < self.flip_probability:
            return ImageOps.mirror(image), mirror_caption(caption)
        return image, caption

    def crop_box(self, width: int, height: int, rng: random.Random, mild: bool = False) -> tuple[int, int, int, int]:
        """A random crop of a `width` × `height` image as a PIL box `(left, top, right, bottom)`, of `safe_scale`
        and an aspect ratio near the image's when `mild`; the largest central crop with an allowed aspect ratio when
        `ATTEMPTS` draws do not fit."""
        scale = self.safe_scale if mild else self.scale
        ratios = self.SAFE_ASPECT_RATIOS if mild else self.ASPECT_RATIOS
        image_ratio = width / height if mild else 1.0
        log_ratios = (math.log(ratios[0] * image_ratio), math.log(ratios[1] * image_ratio))
        for _ in range(self.ATTEMPTS):
            area = width * height * rng.uniform(*scale)
            aspect_ratio = math.exp(rng.uniform(*log_ratios))
            crop_width, crop_height = round(math.sqrt(area * aspect_ratio)), round(math.sqrt(area / aspect_ratio))
            if 0 < crop_width <= width and 0 < crop_height <= height:
                left, top = rng.randint(0, width - crop_width), rng.randint(0, height - crop_height)
                return left, top, left + crop_width, top + crop_height
        aspect_ratio = min(max(width / height, self.ASPECT_RATIOS[0]), self.ASPECT_RATIOS[1])
        crop_width, crop_height = min(width, round(height * aspect_ratio)), min(height, round(width / aspect_ratio))
        left, top = (width - crop_width) // 2, (height - crop_height) // 2
        return left, top, left + crop_width, top + crop_height
