"""Captions and training augmentation for the pre-training datasets.

`clean_caption` normalises every caption before it becomes an item. `TrainTransform` is the pre-training
augmentation, a random resized crop and a horizontal flip; the flip goes with `mirror_caption`, which swaps "left"
and "right" in the caption so that it stays true of the flipped image. A transform is called as
`transform(image, caption, rng) -> (image, caption)` with a `random.Random` of its own per item
(`mamo_hf.data.records.ItemBuilder`), so that augmentation does not depend on worker scheduling.
"""

import math
import random
import re

from PIL import Image, ImageOps

_PUNCTUATION = re.compile(r"[^\w\s'-]")
_LEFT_OR_RIGHT = re.compile(r"\b(left|right)\b", re.IGNORECASE)
_MIRRORED_WORDS = {"left": "right", "right": "left"}


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


def _mirror_word(match: re.Match) -> str:
    word = match.group(0)
    mirrored = _MIRRORED_WORDS[word.lower()]
    if word.isupper():
        return mirrored.upper()
    return mirrored.capitalize() if word[0].isupper() else mirrored


def mirror_caption(text: str) -> str:
    """Swap the whole words "left" and "right" (case kept: "Left" → "Right", "LEFT" → "RIGHT"), so that a caption
    stays true of a horizontally flipped image. "left-hand" becomes "right-hand"; "leftover" and "bright" stay."""
    return _LEFT_OR_RIGHT.sub(_mirror_word, text)


class TrainTransform:
    """Pre-training augmentation: a random resized crop to `image_size` × `image_size`, then a horizontal flip that
    swaps "left" and "right" in the caption, so that the flip never contradicts it.

    The crop follows ALBEF / torchvision's `RandomResizedCrop`: an area of `scale` times the image's area and an
    aspect ratio in [3/4, 4/3] (log-uniform), resized with bicubic filtering; PIL only, no torchvision.

    Args:
        image_size (`int`): side of the square output image, in pixels.
        scale (`tuple[float, float]`): range of the crop's area as a fraction of the image's area, in (0, 1].
        flip_probability (`float`): probability of the horizontal flip.

    Raises:
        ValueError: for a non-positive `image_size`, a `scale` outside (0, 1] or decreasing, or a probability outside
            [0, 1].
    """

    ASPECT_RATIOS = (3 / 4, 4 / 3)
    ATTEMPTS = 10

    def __init__(self, image_size: int, scale: tuple[float, float] = (0.5, 1.0), flip_probability: float = 0.5):
        if image_size <= 0:
            raise ValueError(f"TrainTransform: image_size must be positive, got {image_size}.")
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"TrainTransform: scale must be (low, high) with 0 < low <= high <= 1, got {scale}.")
        if not 0 <= flip_probability <= 1:
            raise ValueError(f"TrainTransform: flip_probability must be in [0, 1], got {flip_probability}.")
        self.image_size = image_size
        self.scale = tuple(scale)
        self.flip_probability = flip_probability

    def __call__(self, image: Image.Image, caption: str, rng: random.Random) -> tuple[Image.Image, str]:
        """Augment one pair with the randomness of `rng` (crop first, then flip). Returns `(image, caption)`: an
        `image_size` × `image_size` image in `image`'s mode, and the caption, mirrored when the image was flipped."""
        box = self.crop_box(image.width, image.height, rng)
        image = image.resize((self.image_size, self.image_size), Image.Resampling.BICUBIC, box=box)
        if rng.random() < self.flip_probability:
            return ImageOps.mirror(image), mirror_caption(caption)
        return image, caption

    def crop_box(self, width: int, height: int, rng: random.Random) -> tuple[int, int, int, int]:
        """A random crop of a `width` × `height` image as a PIL box `(left, top, right, bottom)`; the largest central
        crop with an allowed aspect ratio when `ATTEMPTS` draws do not fit."""
        log_ratios = (math.log(self.ASPECT_RATIOS[0]), math.log(self.ASPECT_RATIOS[1]))
        for _ in range(self.ATTEMPTS):
            area = width * height * rng.uniform(*self.scale)
            aspect_ratio = math.exp(rng.uniform(*log_ratios))
            crop_width, crop_height = round(math.sqrt(area * aspect_ratio)), round(math.sqrt(area / aspect_ratio))
            if 0 < crop_width <= width and 0 < crop_height <= height:
                left, top = rng.randint(0, width - crop_width), rng.randint(0, height - crop_height)
                return left, top, left + crop_width, top + crop_height
        aspect_ratio = min(max(width / height, self.ASPECT_RATIOS[0]), self.ASPECT_RATIOS[1])
        crop_width, crop_height = min(width, round(height * aspect_ratio)), min(height, round(width / aspect_ratio))
        left, top = (width - crop_width) // 2, (height - crop_height) // 2
        return left, top, left + crop_width, top + crop_height
