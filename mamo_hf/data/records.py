"""Image–caption records before they become items, the settings every caption dataset shares, and the item builder.

Every caption dataset (`mamo_hf.data.captions`, `DemoCaptionDataset`, `GroundingCaptionDataset`) reads its source as
`Pair`s and turns each into an item with `ItemBuilder`, a dict with

- `image`: an RGB `PIL.Image.Image` (after the transform, if any),
- `caption`: the cleaned caption (`clean_caption`, after the transform's left/right swap, if any),
- `image_id`: an `int`, equal for all pairs of the same image (they are positives of each other in ITC),
- `skipped`: a tuple of `SkippedSample`, the bad records this item stands in for,
- `sample_key`: an `int`, the seed of the item's training masks.

Its settings are one `CaptionOptions`. A pair that cannot become an item (a missing or unreadable image, a caption
that is empty once cleaned) raises `BadRecordError`, which carries the `SkippedSample` that reports it. Images are
read by `load_image` / `read_image` within a pixel limit (`DEFAULT_MAX_IMAGE_PIXELS` by default), so that one huge
image cannot take a worker's memory.

Augmentation is deterministic whatever the worker scheduling: the randomness of an item comes from its own
`random.Random`, seeded with the dataset's seed, the epoch (`set_epoch`) and the item's index.
"""

import hashlib
import io
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from PIL import Image

from ..image_processing_mamo import to_rgb_array
from .transforms import clean_caption

# Images above this many pixels are decoded at reduced size (JPEG) or skipped, so that one huge image cannot take a
# worker's memory (a 100-megapixel RGB image is 300 MB decoded).
DEFAULT_MAX_IMAGE_PIXELS = 25_000_000
# What PIL raises on a missing, truncated or corrupt file (its decoders are not consistent about the type).
_IMAGE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


@dataclass(frozen=True)
class CaptionOptions:
    """How a caption dataset turns its records into items: the settings shared by `CaptionDataset`,
    `HFCaptionDataset` and `StreamingCaptionDataset` (constructor, `from_hf_dataset`, `from_shards`).

    Args:
        transform (*optional*): called as `transform(image, caption, rng) -> (image, caption)` (e.g.
            `TrainTransform`); None passes images through unchanged.
        max_words (`int`, *optional*): captions are cut to this many words (`clean_caption`); None keeps all words.
        strict (`bool`): raise on the first bad record instead of skipping it. Without it, a record the annotation
            reader cannot use (a missing key, a line that is not JSON or not UTF-8) is skipped and listed in
            `annotation_errors` (map-style datasets) or reported with the next item (streams), and an image that
            cannot be read is skipped when its item is asked for.
        seed (`int`): seed of the augmentation randomness (and of the shard shuffling of `from_shards`).
        max_image_pixels (`int`, *optional*): images above this many pixels are decoded at reduced size when they
            are JPEGs (PIL's draft mode) and skipped otherwise; None for no limit.
        allow_absolute_paths (`bool`): accept image paths of annotation files that lead out of the image root
            (absolute paths elsewhere, `..`); by default such a record is bad, so that an annotation file cannot read
            files anywhere. Only annotation files (`CaptionDataset`, `StreamingCaptionDataset`'s constructor) have
            image paths to check.
    """

    transform: Any = None
    max_words: int | None = 30
    strict: bool = False
    seed: int = 0
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS
    allow_absolute_paths: bool = False


class SkippedSample(NamedTuple):
    """A bad record that was skipped: `source` (the image path, or the record's place) and `reason` (short text:
    "missing image file", "unreadable image: <error>", "empty caption", "bad annotation: <error>")."""

    source: str
    reason: str


class BadRecordError(ValueError):
    """A record that cannot become an item; carries its `SkippedSample`."""

    def __init__(self, source: str, reason: str):
        super().__init__(
            f"Bad record {source}: {reason}. Fix or remove it, or pass strict=False to skip bad records (they are "
            "reported in the items' `skipped` field)."
        )
        self.skipped = SkippedSample(source, reason)


class NoUsableRecordsError(ValueError):
    """A stream has no good record to give: its data is empty, or every record of a whole pass was bad."""


class Pair(NamedTuple):
    """One image–caption pair before loading.

    `image` is a file path, encoded image bytes or a PIL image; `caption` is the raw caption; `error` says why the
    pair cannot be used when reading its annotation already failed (streaming only, where that must not stop a run).
    """

    source: str
    image: str | bytes | Image.Image | None
    caption: str | None
    image_id: int
    error: str | None = None


def caption_list(value) -> list:
    """A record's captions as a list: a string is one caption; an empty list is one empty caption, so that the
    record is reported as skipped rather than lost silently."""
    captions = value if isinstance(value, list) else [value]
    return captions or [None]


def stable_id(key: str | bytes) -> int:
    """A non-negative 63-bit id of a path or of image bytes, the same in every process (unlike `hash`)."""
    data = key.encode() if isinstance(key, str) else key
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big") >> 1


# ---------------------------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------------------------


class _ImageTooLargeError(ValueError):
    """An image above the pixel limit that cannot be decoded at reduced size."""


def require_image_files(paths, where: str) -> None:
    """Fail before any work, not at the step that first reads a missing image: a `FileNotFoundError` naming
    `where` (the annotation file), how many of the image files do not exist, and the first of them.

    `paths` holds file paths; other kinds of image (bytes, PIL images) are not checked."""
    paths = [Path(path) for path in paths if isinstance(path, (str, Path))]
    missing = [path for path in paths if not path.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{where}: {len(missing)} of {len(paths)} image files do not exist, the first {missing[0]}; check the "
            "image root (e.g. --image_root)."
        )


def load_image(image: str | bytes | Image.Image, max_pixels: int | None = None) -> Image.Image:
    """An RGB image from a path, encoded bytes or a PIL image, converted as `MamoImageProcessor` converts (16-bit
    images scaled to 8 bits, alpha composited on white); raises what PIL raises for a bad file, `IsADirectoryError`
    for a path that is not a regular file (a folder, a FIFO), and a `ValueError` for a file above `max_pixels` that
    cannot be decoded below it (`_fit_pixel_limit`)."""
    if isinstance(image, Image.Image):
        return Image.fromarray(to_rgb_array(image))
    if isinstance(image, (str, os.PathLike)) and os.path.exists(image) and not os.path.isfile(image):
        # A FIFO or a device would block or never end; a folder is no image.
        raise IsADirectoryError(f"not a regular file: {image}")
    with Image.open(io.BytesIO(image) if isinstance(image, bytes) else image) as opened:
        if max_pixels:
            _fit_pixel_limit(opened, max_pixels)
        opened.load()
        # The image processor's conversion (16-bit scaled to 8, alpha on white), so that training sees what
        # inference sees.
        return Image.fromarray(to_rgb_array(opened))


def _fit_pixel_limit(opened: Image.Image, max_pixels: int) -> None:
    """Before decoding: a JPEG above `max_pixels` is set to decode at 1/2, 1/4 or 1/8 of its size (PIL's draft mode,
    which never decodes the full image), the largest of these within the limit; any other image above the limit
    raises `_ImageTooLargeError`."""
    width, height = opened.size
    if width * height <= max_pixels:
        return
    for factor in (2, 4, 8):
        reduced = (-(-width // factor), -(-height // factor))
        if reduced[0] * reduced[1] <= max_pixels:
            opened.draft("RGB", reduced)
            break
    if opened.size[0] * opened.size[1] > max_pixels:
        raise _ImageTooLargeError(
            f"image too large: {width}×{height} pixels, above the limit of {max_pixels} (only JPEGs are decoded at "
            "reduced size); raise --max-image-pixels to use it"
        )


def read_image(pair: Pair, max_pixels: int | None = None) -> Image.Image:
    """The pair's image in RGB, or `BadRecordError` saying why it cannot be read."""
    if pair.image is None:
        raise BadRecordError(pair.source, "missing image")
    try:
        return load_image(pair.image, max_pixels)
    except _ImageTooLargeError as error:
        raise BadRecordError(pair.source, str(error)) from None
    except IsADirectoryError:
        raise BadRecordError(pair.source, "not an image file: a folder, a FIFO or a device") from None
    except FileNotFoundError:
        raise BadRecordError(pair.source, "missing image file") from None
    except Image.UnidentifiedImageError:
        raise BadRecordError(pair.source, "unreadable image: not an image file of a format PIL knows") from None
    except Image.DecompressionBombError:  # above PIL's own limit, which --max-image-pixels cannot raise
        raise BadRecordError(
            pair.source,
            f"image too large: above PIL's limit of {2 * Image.MAX_IMAGE_PIXELS} pixels for any image (raise "
            "PIL.Image.MAX_IMAGE_PIXELS to use it)",
        ) from None
    except _IMAGE_ERRORS as error:
        raise BadRecordError(pair.source, f"unreadable image: {error}") from error


# ---------------------------------------------------------------------------------------------------------------
# Pair → item, shared by every dataset
# ---------------------------------------------------------------------------------------------------------------


class ItemBuilder:
    """What every MAMO pre-training dataset shares: its `CaptionOptions`, the epoch, and turning a pair into an item.

    Args:
        options (`CaptionOptions`, *optional*): the item settings (default: `CaptionOptions()`); also readable one by
            one as the attributes `transform`, `max_words`, `strict`, `seed` and `max_image_pixels`.
    """

    def __init__(self, options: CaptionOptions | None = None):
        self.options = options if options is not None else CaptionOptions()
        self.epoch = 0
        # Records found bad while reading the annotations (skipped unless `strict`), reported by the training loop.
        self.annotation_errors: list[SkippedSample] = []

    @property
    def transform(self):
        return self.options.transform

    @property
    def max_words(self) -> int | None:
        return self.options.max_words

    @property
    def strict(self) -> bool:
        return self.options.strict

    @property
    def seed(self) -> int:
        return self.options.seed

    @property
    def max_image_pixels(self) -> int | None:
        return self.options.max_image_pixels

    def set_epoch(self, epoch: int) -> None:
        """Use the augmentation randomness of `epoch` from now on (call it at the start of every epoch)."""
        self.epoch = epoch

    def _item(self, pair: Pair, epoch: int, index, skipped: tuple[SkippedSample, ...]) -> dict:
        """The item of `pair`, augmented with the randomness of `(seed, epoch, index)`; raises `BadRecordError`."""
        if pair.error is not None:
            raise BadRecordError(pair.source, pair.error)
        caption = clean_caption(pair.caption, self.max_words)
        if not caption:
            raise BadRecordError(pair.source, "empty caption")
        image = read_image(pair, self.max_image_pixels)
        key = f"{self.seed}:{epoch}:{index}"
        if self.transform is not None:
            image, caption = self.transform(image, caption, random.Random(key))
        # `sample_key` seeds the training masks of this item, so they do not depend on batching or world size.
        return {
            "image": image,
            "caption": caption,
            "image_id": pair.image_id,
            "skipped": skipped,
            "sample_key": stable_id(key),
        }
