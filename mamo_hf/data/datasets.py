"""Pre-training data for MAMO: image–caption datasets, training augmentation and the batch collator.

Every dataset here yields the same item, a dict with

- `image`: an RGB `PIL.Image.Image` (after the transform, if any),
- `caption`: the cleaned caption (`clean_caption`, after the transform's left/right swap, if any),
- `image_id`: an `int`, equal for all pairs of the same image (they are positives of each other in ITC),
- `skipped`: a tuple of `SkippedSample`, the bad records this item stands in for.

The sources: `CaptionDataset` (ALBEF-style caption JSON, JSONL or CSV files and an image folder),
`HFCaptionDataset` (a local Hugging Face `datasets.Dataset`), `StreamingCaptionDataset` (JSONL/CSV files read line by
line, a streaming `datasets.IterableDataset`, or WebDataset/Parquet shards), and `DemoCaptionDataset` in
`mamo_hf.data.demo`. `expand_data_files` turns paths, globs and brace ranges (`shards/{00000..00099}.tar`) into files.

Bad records (a missing or unreadable image, a caption that is empty once cleaned) never stop a run: they are
skipped and reported exactly once per epoch in the `skipped` field of the item that takes their place, and
`PretrainingCollator` gathers them per batch for the training loop to count. With `strict=True` the first bad record
raises a `ValueError` that names it instead.

Augmentation is deterministic whatever the worker scheduling: the randomness of an item comes from its own
`random.Random`, seeded with the dataset's seed, the epoch (`set_epoch`) and the item's index.
"""

import csv
import glob
import hashlib
import io
import itertools
import json
import logging
import math
import os
import random
import re
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from datasets.distributed import split_dataset_by_node
from PIL import Image, ImageOps

logger = logging.getLogger(__name__)

MAX_CONSECUTIVE_BAD_RECORDS = 100
# Images above this many pixels are decoded at reduced size (JPEG) or skipped, so that one huge image cannot take a
# worker's memory (a 100-megapixel RGB image is 300 MB decoded).
DEFAULT_MAX_IMAGE_PIXELS = 25_000_000
# What PIL raises on a missing, truncated or corrupt file (its decoders are not consistent about the type).
_IMAGE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)
_PUNCTUATION = re.compile(r"[^\w\s'-]")
_LEFT_OR_RIGHT = re.compile(r"\b(left|right)\b", re.IGNORECASE)
_MIRRORED_WORDS = {"left": "right", "right": "left"}


class SkippedSample(NamedTuple):
    """A bad record that was skipped: `source` (the image path, or the record's place) and `reason` (short text:
    "missing image file", "unreadable image: <error>", "empty caption", "bad annotation: <error>")."""

    source: str
    reason: str


class _BadRecordError(ValueError):
    """A record that cannot become an item; carries its `SkippedSample`."""

    def __init__(self, source: str, reason: str):
        super().__init__(
            f"Bad record {source}: {reason}. Fix or remove it, or pass strict=False to skip bad records (they are "
            "reported in the items' `skipped` field)."
        )
        self.skipped = SkippedSample(source, reason)


class _Pair(NamedTuple):
    """One image–caption pair before loading.

    `image` is a file path, encoded image bytes or a PIL image; `caption` is the raw caption; `error` says why the
    pair cannot be used when reading its annotation already failed (streaming only, where that must not stop a run).
    """

    source: str
    image: str | bytes | Image.Image | None
    caption: str | None
    image_id: int
    error: str | None = None


# ---------------------------------------------------------------------------------------------------------------
# Captions and augmentation
# ---------------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------------
# Record → item, shared by every dataset
# ---------------------------------------------------------------------------------------------------------------


class _ImageTooLargeError(ValueError):
    """An image above the pixel limit that cannot be decoded at reduced size."""


def _load_image(image: str | bytes | Image.Image, max_pixels: int | None = None) -> Image.Image:
    """An RGB image from a path, encoded bytes or a PIL image; raises what PIL raises for a bad file, and
    `_ImageTooLargeError` for a file above `max_pixels` that cannot be decoded below it (`_fit_pixel_limit`)."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    with Image.open(io.BytesIO(image) if isinstance(image, bytes) else image) as opened:
        if max_pixels:
            _fit_pixel_limit(opened, max_pixels)
        opened.load()
        return opened.convert("RGB")


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


def _read_image(pair: _Pair, max_pixels: int | None = None) -> Image.Image:
    """The pair's image in RGB, or `_BadRecordError` saying why it cannot be read."""
    if pair.image is None:
        raise _BadRecordError(pair.source, "missing image")
    try:
        return _load_image(pair.image, max_pixels)
    except _ImageTooLargeError as error:
        raise _BadRecordError(pair.source, str(error)) from None
    except FileNotFoundError:
        raise _BadRecordError(pair.source, "missing image file") from None
    except Image.UnidentifiedImageError:
        raise _BadRecordError(pair.source, "unreadable image: not an image file of a format PIL knows") from None
    except _IMAGE_ERRORS as error:
        raise _BadRecordError(pair.source, f"unreadable image: {error}") from error


def _caption_list(value) -> list:
    """A record's captions as a list: a string is one caption; an empty list is one empty caption, so that the
    record is reported as skipped rather than lost silently."""
    captions = value if isinstance(value, list) else [value]
    return captions or [None]


def _stable_id(key: str | bytes) -> int:
    """A non-negative 63-bit id of a path or of image bytes, the same in every process (unlike `hash`)."""
    data = key.encode() if isinstance(key, str) else key
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big") >> 1


class _PairItems:
    """What every MAMO pre-training dataset shares: the item settings, the epoch, and turning a pair into an item."""

    def __init__(self, transform, max_words: int | None, strict: bool, seed: int, max_image_pixels: int | None):
        self.transform = transform
        self.max_words = max_words
        self.strict = strict
        self.seed = seed
        self.max_image_pixels = max_image_pixels
        self.epoch = 0
        # Records found bad while reading the annotations (skipped unless `strict`), reported by the training loop.
        self.annotation_errors: list[SkippedSample] = []

    def set_epoch(self, epoch: int) -> None:
        """Use the augmentation randomness of `epoch` from now on (call it at the start of every epoch)."""
        self.epoch = epoch

    def _item(self, pair: _Pair, epoch: int, index, skipped: tuple[SkippedSample, ...]) -> dict:
        """The item of `pair`, augmented with the randomness of `(seed, epoch, index)`; raises `_BadRecordError`."""
        if pair.error is not None:
            raise _BadRecordError(pair.source, pair.error)
        caption = clean_caption(pair.caption, self.max_words)
        if not caption:
            raise _BadRecordError(pair.source, "empty caption")
        image = _read_image(pair, self.max_image_pixels)
        key = f"{self.seed}:{epoch}:{index}"
        if self.transform is not None:
            image, caption = self.transform(image, caption, random.Random(key))
        # `sample_key` seeds the training masks of this item, so they do not depend on batching or world size.
        return {
            "image": image,
            "caption": caption,
            "image_id": pair.image_id,
            "skipped": skipped,
            "sample_key": _stable_id(key),
        }


class MapCaptionDataset(_PairItems, torch.utils.data.Dataset):
    """Base of the map-style datasets: subclasses give `__len__` and `_pair(index)`; this class gives `__getitem__`
    with the skipping of bad records (a bad record is replaced by the next good one, so batches keep their size)."""

    def __len__(self) -> int:
        raise NotImplementedError

    def _pair(self, index: int) -> _Pair:
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict:
        """The item at `index`, or, when that record is bad, the next good record after it (wrapping around) with
        the bad record's `SkippedSample` in `skipped`: each bad record is reported once per epoch, when its own
        index is asked for.

        Raises:
            IndexError: for an index out of range.
            ValueError: for a bad record when `strict=True`, and when `MAX_CONSECUTIVE_BAD_RECORDS` records in a row
                (or all records) are bad.
        """
        length = len(self)
        if not -length <= index < length:
            raise IndexError(f"index {index} out of range for a dataset of {length} pairs")
        skipped = ()
        for offset in range(min(MAX_CONSECUTIVE_BAD_RECORDS, length)):
            position = (index + offset) % length
            try:
                return self._item(self._pair(position), self.epoch, position, skipped)
            except _BadRecordError as error:
                if self.strict:
                    raise
                skipped = skipped or (error.skipped,)
                last = error.skipped
        raise ValueError(
            f"{offset + 1} records in a row from index {index % length} on are bad (the last: {last.source}: "
            f"{last.reason}); check the annotation files and the image folder."
        )


# ---------------------------------------------------------------------------------------------------------------
# Data file patterns
# ---------------------------------------------------------------------------------------------------------------

_NUMERIC_RANGE = re.compile(r"(-?\d+)\.\.(-?\d+)(?:\.\.(-?\d+))?")
_GLOB_CHARACTERS = frozenset("*?[")


def _matching_brace(text: str, start: int) -> int | None:
    """The index of the `}` that closes the `{` at `start`, or None."""
    depth = 0
    for index in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth == 0:
            return index
    return None


def _top_level_split(text: str) -> list[str]:
    """`text` split at the commas outside nested braces."""
    parts, depth, start = [], 0, 0
    for index, character in enumerate(text):
        depth += {"{": 1, "}": -1}.get(character, 0)
        if character == "," and depth == 0:
            parts.append(text[start:index])
            start = index + 1
    return parts + [text[start:]]


def _numeric_range(first: str, last: str, step: str | None) -> list[str]:
    """The numbers of `{first..last[..step]}`, zero-padded to the wider end when either end is (`00007`, `-01`)."""
    start, stop = int(first), int(last)
    increment = abs(int(step or 1)) or 1
    padded = any(len(end.lstrip("-")) > 1 and end.lstrip("-").startswith("0") for end in (first, last))
    width = max(len(first), len(last)) if padded else 0
    numbers = range(start, stop + 1, increment) if start <= stop else range(start, stop - 1, -increment)
    return [f"{number:0{width}d}" for number in numbers]


def expand_braces(pattern: str) -> list[str]:
    """Expand shell-style braces, as WebDataset users write shard lists: `{a,b}` lists (nested ones too) and
    numeric ranges `{first..last}` or `{first..last..step}` (zero padding kept: `{008..010}` gives `008 009 010`).
    Several groups multiply, left to right. A brace group that is neither (`{}`, `{abc}`) stays as it is.

    Example: `expand_braces("s/{00..02}.{tar,parquet}")` is `["s/00.tar", "s/00.parquet", "s/01.tar", ...]`.
    """
    search_from = 0
    while (start := pattern.find("{", search_from)) >= 0:
        end = _matching_brace(pattern, start)
        if end is None:
            break
        body = pattern[start + 1 : end]
        parts = _top_level_split(body)
        if len(parts) > 1:
            alternatives = [expanded for part in parts for expanded in expand_braces(part)]
        elif numeric := _NUMERIC_RANGE.fullmatch(body):
            alternatives = _numeric_range(*numeric.groups())
        else:
            search_from = start + 1  # a literal brace
            continue
        tails = expand_braces(pattern[end + 1 :])
        return [pattern[:start] + alternative + tail for alternative in alternatives for tail in tails]
    return [pattern]


def expand_data_files(patterns) -> list[str]:
    """The files named by one or several paths or patterns, in order: braces are expanded (`expand_braces`), then
    each name that is not an existing file is read as a glob (`*`, `?`, `[...]`, `**`), whose matches are sorted. A
    pattern gives each file once; a file named by several patterns is read as often. Names of a brace pattern that
    match nothing are left out with a warning (a shard list with gaps still trains on the shards it has).

    Raises:
        FileNotFoundError: naming the first pattern (or path) that matches no file.
    """
    if isinstance(patterns, (str, os.PathLike)):
        patterns = [patterns]
    files = []
    for pattern in map(str, patterns):
        names = expand_braces(pattern)
        matched, missing = [], []
        for name in names:
            if os.path.isfile(name):
                found = [name]
            elif _GLOB_CHARACTERS & set(name):
                found = sorted(path for path in glob.glob(name, recursive=True) if os.path.isfile(path))
            else:
                found = []
            matched += found
            missing += [] if found else [name]
        if not matched:
            is_pattern = len(names) > 1 or _GLOB_CHARACTERS & set(pattern)
            raise FileNotFoundError(
                f"{pattern}: " + ("no file matches this pattern." if is_pattern else "no such file.")
            )
        if missing:
            logger.warning(
                "%s: %d of %d names match no file (the first: %s).", pattern, len(missing), len(names), missing[0]
            )
        files += dict.fromkeys(matched)
    return files


# ---------------------------------------------------------------------------------------------------------------
# Annotation files
# ---------------------------------------------------------------------------------------------------------------


def _not_utf8(file: Path, error: UnicodeDecodeError) -> ValueError:
    return ValueError(f"{file}: not UTF-8 text (byte {error.start}: {error.reason}); convert it to UTF-8.")


def _json_records(file: Path) -> Iterator[tuple[str, dict]]:
    with open(file, encoding="utf-8") as handle:
        try:
            records = json.load(handle)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"{file}: not valid JSON (line {error.lineno}, column {error.colno}): {error.msg}"
            ) from None
        except UnicodeDecodeError as error:
            raise _not_utf8(file, error) from None
    if not isinstance(records, list):
        raise ValueError(f"{file}: expected a JSON list of {{'image': ..., 'caption': ...}} records.")
    for number, record in enumerate(records):
        yield f"{file}, record {number}", record


class _JsonLine(str):
    """A line of a JSONL file, JSON text still to decode (unlike a JSON file's records, already decoded)."""


def _jsonl_lines(file: Path) -> Iterator[tuple[str, _JsonLine | bytes]]:
    """The non-blank lines, decoded; a line that is not UTF-8 stays bytes (a bad record for `_parse_record`)."""
    with open(file, "rb") as handle:
        for number, line in enumerate(handle, 1):
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                yield f"{file}, line {number}", line
                continue
            if text.strip():
                yield f"{file}, line {number}", _JsonLine(text)


def _csv_rows(file: Path) -> Iterator[tuple[str, dict]]:
    with open(file, newline="", encoding="utf-8") as handle:
        try:
            reader = csv.DictReader(handle)
            if not {"image", "caption"} <= set(reader.fieldnames or ()):
                raise ValueError(f"{file}: the CSV header must name the columns 'image' and 'caption'.")
            for row in reader:
                yield f"{file}, line {reader.line_num}", row
        except UnicodeDecodeError as error:
            raise _not_utf8(file, error) from None


# Readers yield (where, raw record): an object (JSON, CSV) or a line of text to decode (JSONL).
_READERS = {".json": _json_records, ".jsonl": _jsonl_lines, ".csv": _csv_rows}
_STREAMING_READERS = {".jsonl": _jsonl_lines, ".csv": _csv_rows}


def _annotation_paths(annotation_files, readers: dict) -> list[Path]:
    """The annotation files as paths; raises early for none, a missing file or an unknown format."""
    if isinstance(annotation_files, (str, os.PathLike)):
        annotation_files = [annotation_files]
    paths = [Path(file) for file in annotation_files]
    if not paths:
        raise ValueError("No annotation files given.")
    for path in paths:
        if path.suffix.lower() not in readers:
            raise ValueError(f"Annotation file {path}: unknown format {path.suffix!r}; use one of {sorted(readers)}.")
        if not path.is_file():
            raise FileNotFoundError(f"Annotation file {path} not found.")
    return paths


def _parse_record(where: str, raw: str | bytes | dict, root: str, allow_outside_root: bool) -> tuple[str, list]:
    """`(image path, captions)` of one raw record; a relative image path is joined to `root`.

    Raises:
        ValueError: naming `where`, for a line that is not UTF-8 or not JSON, a missing or empty `image`, a missing
            `caption`, a caption that is not a string or a list of strings, or (unless `allow_outside_root`) an
            image path that leads out of `root` (an absolute path to a file under `root` is fine).
    """
    if isinstance(raw, bytes):
        raise ValueError(f"{where}: not UTF-8 text")
    try:
        record = json.loads(raw) if isinstance(raw, _JsonLine) else raw
    except json.JSONDecodeError as error:
        raise ValueError(f"{where}: not valid JSON: {error.msg}") from None
    image = record.get("image") if isinstance(record, dict) else None
    if not (isinstance(image, str) and image and "caption" in record):
        raise ValueError(f"{where}: a record needs an 'image' path and a 'caption', got {str(record)[:200]}")
    captions = _caption_list(record["caption"])
    if not all(caption is None or isinstance(caption, str) for caption in captions):
        raise ValueError(f"{where}: 'caption' must be a string or a list of strings, got {record['caption']!r:.200}")
    path = os.path.normpath(os.path.join(root, image))
    if not allow_outside_root and not path.startswith(os.path.join(root, "")):
        raise ValueError(
            f"{where}: the image path {image!r} leads out of the image root {root}; allow it with "
            "allow_absolute_paths=True (--allow-absolute-image-paths)"
        )
    return path, captions


def _raw_records(paths: list[Path], image_root, readers: dict) -> Iterator[tuple[str, str | dict, str]]:
    """`(where, raw record, image root)` for every record of the files, in order, read lazily."""
    for path in paths:
        root = os.path.abspath(image_root if image_root is not None else path.parent)
        for where, raw in readers[path.suffix.lower()](path):
            yield where, raw, root


class CaptionDataset(MapCaptionDataset):
    """Image–caption pairs from ALBEF-style annotation files and image files (map-style).

    Formats, by file suffix: `.json` (a list of `{"image": path, "caption": str or list of str}`), `.jsonl` (one
    such object per line) and `.csv` (columns `image` and `caption`). A record with a list of captions gives one pair
    per caption. All annotations are read at construction; images are read when an item is asked for.

    Args:
        annotation_files (path or list of paths): one or several annotation files, read in order.
        image_root (path, *optional*): folder that relative image paths are relative to (default: the folder of the
            annotation file that names them).
        transform (*optional*): called as `transform(image, caption, rng) -> (image, caption)` (e.g.
            `TrainTransform`); None passes images through unchanged.
        max_words (`int`, *optional*): captions are cut to this many words (`clean_caption`).
        strict (`bool`): raise on the first bad record instead of skipping it. Without it, a record the annotation
            reader cannot use (a missing key, a line that is not JSON or not UTF-8) is skipped and listed in
            `annotation_errors`, and an image that cannot be read is skipped when its item is asked for.
        seed (`int`): seed of the augmentation randomness.
        max_image_pixels (`int`, *optional*): images above this many pixels are decoded at reduced size when they
            are JPEGs (PIL's draft mode) and skipped otherwise; None for no limit.
        allow_absolute_paths (`bool`): accept image paths that lead out of the image root (absolute paths elsewhere,
            `..`); by default such a record is bad, so that an annotation file cannot read files anywhere.

    Items: see the module docstring. `image_id` is the index of the image's path in `image_paths`, so that all
    pairs of one image share it.

    Raises:
        ValueError: for an annotation file that is not valid JSON/CSV or not UTF-8 (naming the file), a bad record
            with `strict=True` (naming the file and the record or line), an unknown file suffix, or no usable record.
        FileNotFoundError: for a missing annotation file.
    """

    def __init__(
        self,
        annotation_files,
        image_root=None,
        transform=None,
        max_words: int | None = 30,
        strict: bool = False,
        seed: int = 0,
        max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
        allow_absolute_paths: bool = False,
    ):
        super().__init__(transform, max_words, strict, seed, max_image_pixels)
        paths = _annotation_paths(annotation_files, _READERS)
        image_ids: dict[str, int] = {}
        self._pairs: list[tuple[int, str | None]] = []
        for where, raw, root in _raw_records(paths, image_root, _READERS):
            try:
                image_path, captions = _parse_record(where, raw, root, allow_absolute_paths)
            except ValueError as error:
                if strict:
                    raise
                self.annotation_errors.append(SkippedSample(where, f"bad annotation: {error}"))
                continue
            image_id = image_ids.setdefault(image_path, len(image_ids))
            self._pairs.extend((image_id, caption) for caption in captions)
        if not self._pairs:
            first_error = f" (the first bad one: {self.annotation_errors[0].reason})" if self.annotation_errors else ""
            raise ValueError(f"No usable records in the annotation files {[str(p) for p in paths]}{first_error}.")
        self.image_paths: list[str] = list(image_ids)

    def __len__(self) -> int:
        return len(self._pairs)

    def _pair(self, index: int) -> _Pair:
        image_id, caption = self._pairs[index]
        path = self.image_paths[image_id]
        return _Pair(source=path, image=path, caption=caption, image_id=image_id)


# ---------------------------------------------------------------------------------------------------------------
# Hugging Face datasets
# ---------------------------------------------------------------------------------------------------------------


def _undecoded(dataset, image_column: str, text_column: str):
    """`dataset` with only the two columns, the image column as `Image(decode=False)` (`{"bytes", "path"}`
    dicts), so that images are decoded here and a corrupt one is skipped like any bad record."""
    columns = dataset.column_names
    if columns is not None and not {image_column, text_column} <= set(columns):
        raise ValueError(
            f"The dataset needs an image column {image_column!r} and a text column {text_column!r}; its columns are "
            f"{columns}. Pass image_column=... and text_column=..."
        )
    return dataset.select_columns([image_column, text_column]).cast_column(image_column, datasets.Image(decode=False))


def _hf_image(value: dict | None) -> tuple[str | None, str | bytes | None]:
    """`(path, bytes or path to read)` of an undecoded `datasets.Image` value."""
    if value is None:
        return None, None
    return value["path"], (value["bytes"] if value["bytes"] is not None else value["path"])


class HFCaptionDataset(MapCaptionDataset):
    """Image–caption pairs from a local Hugging Face `datasets.Dataset` (map-style), e.g. from
    `datasets.load_from_disk` or `Dataset.from_dict(...).cast_column("image", datasets.Image())`.

    Images are decoded here with PIL (the column is read as `Image(decode=False)`), so that corrupt image bytes are
    skipped and reported like any bad record. A row whose text is a list of captions gives one pair per caption.

    Args:
        dataset (`datasets.Dataset`): the dataset; the image column may hold images or image paths.
        image_column (`str`), text_column (`str`): the columns of the images and of the captions (a string or a
            list of strings per row).
        transform, max_words, strict, seed: as for `CaptionDataset`.

    `image_id` is shared by the rows with the same image path, and is the row otherwise (images stored as bytes
    without a path). Note that datasets built from image folders may store bare file names as paths.

    Raises:
        TypeError: for a streaming `datasets.IterableDataset` (use `StreamingCaptionDataset.from_hf_dataset`).
        ValueError: when a column is missing.
    """

    def __init__(
        self,
        dataset,
        image_column: str = "image",
        text_column: str = "caption",
        transform=None,
        max_words: int | None = 30,
        strict: bool = False,
        seed: int = 0,
        max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
    ):
        if isinstance(dataset, datasets.IterableDataset):
            raise TypeError("HFCaptionDataset takes a map-style dataset; use StreamingCaptionDataset.from_hf_dataset.")
        super().__init__(transform, max_words, strict, seed, max_image_pixels)
        self.dataset = _undecoded(dataset, image_column, text_column)
        self.image_column, self.text_column = image_column, text_column
        paths = pc.struct_field(self.dataset.with_format("arrow")[image_column], "path").to_pylist()
        image_ids: dict[str | int, int] = {}
        self._image_ids = np.array(
            [image_ids.setdefault(path or row, len(image_ids)) for row, path in enumerate(paths)]
        )
        counts = self._caption_counts()
        self._rows = np.repeat(np.arange(len(self.dataset)), counts)
        self._caption_numbers = np.arange(len(self._rows)) - np.repeat(np.cumsum(counts) - counts, counts)

    def _caption_counts(self) -> np.ndarray:
        """Pairs per row: one for a plain text column, else the length of each row's caption list."""
        if self.dataset.features[self.text_column] == datasets.Value("string"):
            return np.ones(len(self.dataset), dtype=np.int64)
        return np.array([len(_caption_list(value)) for value in self.dataset[self.text_column]], dtype=np.int64)

    def __len__(self) -> int:
        return len(self._rows)

    def _pair(self, index: int) -> _Pair:
        row = int(self._rows[index])
        record = self.dataset[row]
        path, image = _hf_image(record[self.image_column])
        caption = _caption_list(record[self.text_column])[self._caption_numbers[index]]
        return _Pair(source=path or f"row {row}", image=image, caption=caption, image_id=int(self._image_ids[row]))


# ---------------------------------------------------------------------------------------------------------------
# Streaming
# ---------------------------------------------------------------------------------------------------------------


def _worker_id_and_count() -> tuple[int, int]:
    info = torch.utils.data.get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


class _AnnotationStream:
    """The records of JSONL/CSV annotation files, read line by line, sharded by record over ranks and workers."""

    def __init__(self, annotation_files, image_root, allow_absolute_paths: bool):
        self.paths = _annotation_paths(annotation_files, _STREAMING_READERS)
        self.image_root = image_root
        self.allow_absolute_paths = allow_absolute_paths

    def shard(self, epoch: int, rank: int, world_size: int) -> Iterator[tuple[int, list[_Pair]]]:
        """`(running record index, pairs)` of the records of this rank and DataLoader worker: those whose index
        modulo `world_size * num_workers` is `rank * num_workers + worker_id`. A record that cannot be parsed gives
        one pair carrying the error."""
        worker_id, num_workers = _worker_id_and_count()
        shard, num_shards = rank * num_workers + worker_id, world_size * num_workers
        records = _raw_records(self.paths, self.image_root, _STREAMING_READERS)
        for index, (where, raw, root) in enumerate(records):
            if index % num_shards == shard:
                yield index, self._pairs(where, raw, root)

    def _pairs(self, where: str, raw: str | bytes | dict, root: str) -> list[_Pair]:
        try:
            image_path, captions = _parse_record(where, raw, root, self.allow_absolute_paths)
        except ValueError as error:
            return [_Pair(source=where, image=None, caption=None, image_id=-1, error=f"bad annotation: {error}")]
        image_id = _stable_id(image_path)
        return [_Pair(source=image_path, image=image_path, caption=caption, image_id=image_id) for caption in captions]


class _HFStream:
    """The records of a streaming `datasets.IterableDataset`, split over ranks with
    `datasets.distributed.split_dataset_by_node`; `datasets` itself splits them over DataLoader workers."""

    def __init__(self, dataset, image_column: str, text_column: str):
        if not isinstance(dataset, datasets.IterableDataset):
            raise TypeError(
                "from_hf_dataset takes a streaming datasets.IterableDataset; use HFCaptionDataset for a map-style one."
            )
        self.dataset = _undecoded(dataset, image_column, text_column)
        self.image_column, self.text_column = image_column, text_column

    def shard(self, epoch: int, rank: int, world_size: int) -> Iterator[tuple[tuple[int, int, int], list[_Pair]]]:
        """`((rank, worker_id, running index), pairs)` of the records of this rank and worker, in epoch `epoch`."""
        dataset = split_dataset_by_node(self.dataset, rank=rank, world_size=world_size)
        dataset.set_epoch(epoch)
        worker_id, _ = _worker_id_and_count()
        for index, record in enumerate(dataset):
            yield (rank, worker_id, index), self._pairs(record, f"record {index} of rank {rank}, worker {worker_id}")

    def _pairs(self, record: dict, place: str) -> list[_Pair]:
        """The pairs of one record; `place` names it when its image has no path."""
        path, image = _hf_image(record[self.image_column])
        source = path or place
        image_id = _stable_id(path or image or source)
        return [_Pair(source, image, caption, image_id) for caption in _caption_list(record[self.text_column])]


# ---------------------------------------------------------------------------------------------------------------
# WebDataset and Parquet shards
# ---------------------------------------------------------------------------------------------------------------

# The files of a WebDataset sample that can hold its image, by preference; also the Parquet columns tried, in this
# order, when the image column asked for is the default one ("image") and a file has none.
IMAGE_KEYS = ("jpg", "jpeg", "png", "webp")
# The Parquet columns tried, in this order, when the text column asked for is the default one ("caption").
TEXT_COLUMNS = ("caption", "text", "txt")
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
_IMAGE_FILES = ", ".join(f".{key}" for key in IMAGE_KEYS[:-1]) + f" or .{IMAGE_KEYS[-1]}"
_PARQUET_BATCH_ROWS = 256
# Every shard reader yields records of this form: the record's place, its encoded image, its captions and, for a
# record that cannot be used, the reason (a `SkippedSample` reason).
_SHARD_FEATURES = datasets.Features(
    {
        "source": datasets.Value("string"),
        "image": datasets.Value("binary"),
        "caption": datasets.List(datasets.Value("string")),
        "error": datasets.Value("string"),
    }
)


def _shard_kind(name: str) -> str | None:
    if name.endswith(_TAR_SUFFIXES):
        return "webdataset"
    return "parquet" if name.endswith(".parquet") else None


def shard_format(files: Sequence[str]) -> str | None:
    """The kind of the data files: "webdataset" when all are tar archives (`.tar`, `.tar.gz`, `.tgz`), "parquet" when
    all are `.parquet` files, None when none is a shard (caption JSON/JSONL/CSV files).

    Raises:
        ValueError: for shards mixed with each other or with other files.
    """
    kinds = {_shard_kind(str(file).lower()) for file in files}
    if len(kinds) > 1:
        raise ValueError(
            "mixes WebDataset .tar shards, .parquet shards and caption files; give one kind of data per run."
        )
    return kinds.pop() if kinds else None


def _shard_record(source: str, image: bytes | None = None, captions=(), error: str | None = None) -> dict:
    return {"source": source, "image": image, "caption": list(captions), "error": error}


def _tar_samples(path: str) -> Iterator[tuple[str, dict[str, bytes]]]:
    """`(key, {extension: bytes})` for the samples of a WebDataset tar archive, read in one sequential pass.

    As in WebDataset, a sample is a run of consecutive files with the same key, the file's path up to the first dot
    of its name (`a/000042.jpg` and `a/000042.txt` are the fields `jpg` and `txt` of the sample `a/000042`); files
    without an extension and hidden files are ignored. Raises what `tarfile` raises for a corrupt archive.
    """
    key, fields = None, {}
    with tarfile.open(path, mode="r|*") as archive:
        for member in archive:
            folder, _, name = member.name.rpartition("/")
            stem, dot, extension = name.partition(".")
            if not (member.isfile() and stem and dot):
                continue
            member_key = f"{folder}/{stem}" if folder else stem
            if member_key != key:
                if key is not None:
                    yield key, fields
                key, fields = member_key, {}
            fields[extension.lower()] = archive.extractfile(member).read()
    if key is not None:
        yield key, fields


def _webdataset_captions(fields: dict[str, bytes]) -> list:
    """The captions of a sample: its `txt` file, else the `caption` (a string or a list of strings) of its `json`
    file. Raises `ValueError` with the reason to skip it."""
    if "txt" in fields:
        try:
            return [fields["txt"].decode("utf-8")]
        except UnicodeDecodeError:
            raise ValueError("bad annotation: the .txt file is not UTF-8 text") from None
    if "json" in fields:
        try:
            metadata = json.loads(fields["json"])
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"bad annotation: the .json file is not valid JSON ({error})") from None
        captions = _caption_list(metadata.get("caption") if isinstance(metadata, dict) else None)
        if all(isinstance(caption, str) for caption in captions):
            return captions
        if captions != [None]:
            raise ValueError("bad annotation: 'caption' in the .json file must be a string or a list of strings")
    raise ValueError("missing caption: the sample has no .txt file and no 'caption' in a .json file")


def _webdataset_records(shards: list[str]) -> Iterator[dict]:
    """The records of WebDataset tar shards, in order. A sample without an image or a caption is a record carrying
    the reason; so is an archive that cannot be read further (the rest of that shard is lost, the others are read)."""
    for path in shards:
        key = None
        try:
            for key, fields in _tar_samples(path):
                source = f"{path}, sample {key}"
                image_key = next((name for name in IMAGE_KEYS if name in fields), None)
                try:
                    captions = _webdataset_captions(fields)
                    if image_key is None:
                        raise ValueError(f"missing image: the sample has no {_IMAGE_FILES} file")
                except ValueError as error:
                    yield _shard_record(source, error=str(error))
                    continue
                yield _shard_record(source, fields[image_key], captions)
        except (tarfile.TarError, OSError, EOFError) as error:
            after = f"; the samples after {key} are skipped" if key is not None else ""
            yield _shard_record(path, error=f"unreadable shard: {error}{after}")


def _column_name(path: str, schema: pa.Schema, asked: str, default: str, fallbacks: Sequence[str], what: str) -> str:
    """The column of `schema` to read: `asked`, or, when `asked` is `default` and absent, the first of `fallbacks`."""
    names = schema.names
    if asked in names:
        return asked
    found = next((name for name in fallbacks if name in names), None) if asked == default else None
    if found is None:
        raise ValueError(
            f"{path}: no {what} column {asked!r}; its columns are {names}. Pass image_column=... and text_column=... "
            "(--image-column, --text-column)."
        )
    return found


def _check_parquet_types(path: str, schema: pa.Schema, image_column: str, text_column: str) -> None:
    """Raise `ValueError` unless the image column holds encoded images (binary, or a `datasets.Image` struct with
    `bytes`) and the text column strings or lists of strings."""
    image_type, text_type = schema.field(image_column).type, schema.field(text_column).type
    binary = (pa.types.is_binary, pa.types.is_large_binary, pa.types.is_binary_view)
    if pa.types.is_struct(image_type) and image_type.get_field_index("bytes") >= 0:
        image_type = image_type.field("bytes").type
    if not any(is_type(image_type) for is_type in binary):
        raise ValueError(
            f"{path}: the image column {image_column!r} has type {schema.field(image_column).type}; Parquet shards "
            "need encoded images in it (binary, or a {'bytes', 'path'} struct as `datasets.Image` writes)."
        )
    if pa.types.is_list(text_type) or pa.types.is_large_list(text_type):
        text_type = text_type.value_type
    if not (
        pa.types.is_string(text_type) or pa.types.is_large_string(text_type) or pa.types.is_string_view(text_type)
    ):
        raise ValueError(
            f"{path}: the text column {text_column!r} has type {schema.field(text_column).type}; it needs strings or "
            "lists of strings."
        )


def _parquet_pieces(files: list[str], image_column: str, text_column: str):
    """`(pieces, image column, text column)`: the row groups of the Parquet files as `(file, row group, its first
    row)`, and the columns to read (checked in every file's schema, from the footers only). Raises `ValueError`
    naming a file that is not Parquet or lacks the columns."""
    pieces, columns = [], None
    for path in files:
        try:
            metadata = pq.read_metadata(path)
        except (OSError, pa.ArrowException) as error:
            raise ValueError(f"{path}: not a readable Parquet file ({error}).") from None
        schema = metadata.schema.to_arrow_schema()
        if columns is None:
            columns = (
                _column_name(path, schema, image_column, "image", IMAGE_KEYS, "image"),
                _column_name(path, schema, text_column, "caption", TEXT_COLUMNS, "text"),
            )
            if columns != (image_column, text_column):
                logger.info("Parquet shards: reading images from %r and captions from %r.", *columns)
        for column, what in zip(columns, ("image", "text")):
            if column not in schema.names:
                raise ValueError(
                    f"{path}: no {what} column {column!r} (the first file has one); its columns are {schema.names}."
                )
        _check_parquet_types(path, schema, *columns)
        first_row = 0
        for group in range(metadata.num_row_groups):
            pieces.append((path, group, first_row))
            first_row += metadata.row_group(group).num_rows
    return pieces, *columns


def _parquet_records(pieces: list[tuple[str, int, int]], image_column: str, text_column: str) -> Iterator[dict]:
    """The records of Parquet row groups, read in batches of `_PARQUET_BATCH_ROWS` rows. A row group that cannot
    be read further is a record carrying the reason (the rest of it is lost, the others are read)."""
    for path, group, first_row in pieces:
        row = first_row
        try:
            batches = pq.ParquetFile(path).iter_batches(
                batch_size=_PARQUET_BATCH_ROWS, row_groups=[group], columns=[image_column, text_column]
            )
            for batch in batches:
                images = batch.column(image_column).to_pylist()
                for image, caption in zip(images, batch.column(text_column).to_pylist()):
                    image = image["bytes"] if isinstance(image, dict) else image
                    yield _shard_record(
                        f"{path}, row {row}", image, caption if isinstance(caption, list) else [caption]
                    )
                    row += 1
        except (OSError, pa.ArrowException) as error:
            yield _shard_record(
                f"{path}, row group {group}", error=f"unreadable shard: {error}; rows from {row} on are skipped"
            )


# [decision] Shards are read by this module, not by the packaged "webdataset" and "parquet" builders of `datasets`
# (which still splits them over ranks, workers and epochs). The webdataset builder infers a schema from the first five
# samples: it raises when they differ in fields (one without an image), drops a later image whose extension they lack
# (a .jpg among .png), and ends the stream at the first caption that is not UTF-8; the parquet builder tells no file or
# row of a record. Here each bad sample is one skipped record naming its shard and key or row (DESIGN.md, 6).
class _ShardStream(_HFStream):
    """The records of WebDataset or Parquet shards. They are read by `_webdataset_records` / `_parquet_records`
    inside a `datasets.IterableDataset` with one `datasets` shard per tar file or Parquet row group, so that ranks,
    DataLoader workers and epochs are split as for any streaming Hugging Face dataset (`_HFStream.shard`).

    `image_id` is a hash of the image bytes: pairs of the same image, wherever they are stored, share it.
    """

    def __init__(self, dataset: datasets.IterableDataset):
        self.dataset = dataset

    def _pairs(self, record: dict, place: str) -> list[_Pair]:
        source = record["source"]
        if record["error"] is not None:
            return [_Pair(source, None, None, image_id=-1, error=record["error"])]
        image_id = _stable_id(record["image"] or source)
        return [_Pair(source, record["image"], caption, image_id) for caption in _caption_list(record["caption"])]


class StreamingCaptionDataset(_PairItems, torch.utils.data.IterableDataset):
    """Image–caption pairs streamed from JSONL/CSV annotation files read line by line (for data that does not fit
    in memory), from a streaming Hugging Face dataset (`from_hf_dataset`), or from WebDataset or Parquet shards
    (`from_shards`).

    The stream is sharded over distributed ranks (`torch.distributed`'s rank and world size when a process group is
    initialised, else one process, or the `rank` and `world_size` given) and over DataLoader workers: with
    `num_workers` workers per rank, shard `rank * num_workers + worker_id` keeps the records whose running index
    modulo `world_size * num_workers` is its shard index. A record with several captions gives all its pairs to its
    shard. Shards may therefore differ in length by one record (more with lists of captions or bad records).

    The stream cycles forever, epoch after epoch from `self.epoch` on (the epoch sets the augmentation randomness,
    seeded by `(seed, epoch, running record index)`; for Hugging Face datasets it also goes to their `set_epoch`).
    **The training loop must be step-based**: take a fixed number of batches; there is no end of epoch. Do not pass
    the DataLoader to `accelerator.prepare` (it would shard the stream again, or dispatch rank 0's shard to every
    rank): this dataset shards itself; move batches to the device in the loop.

    Bad records are skipped (or raise with `strict=True`); their `SkippedSample`s travel with the next good item of
    the same shard. A record that cannot be parsed is a bad record here ("bad annotation: ..."), since a long run must
    not die on one line deep in a file.

    Args:
        annotation_files (path or list of paths): `.jsonl` or `.csv` files (see `CaptionDataset`), read in order.
        image_root, transform, max_words, strict, seed, max_image_pixels, allow_absolute_paths: as for
            `CaptionDataset`.
        rank (`int`, *optional*), world_size (`int`, *optional*): the process's rank and the number of processes;
            both or neither (default: from `torch.distributed`).

    `image_id` is a 63-bit hash of the image path (of the image bytes for a Hugging Face dataset without paths), so
    that pairs of one image share it on every rank.

    Raises:
        ValueError: for a `.json` or unknown file suffix, an invalid rank, a shard whose records are all bad for a
            whole pass, or a rank (without DataLoader workers) that gets no records (more shards than records). A
            DataLoader worker that gets no records stops, with a warning, and the other workers go on.
    """

    def __init__(
        self,
        annotation_files,
        image_root=None,
        transform=None,
        max_words: int | None = 30,
        strict: bool = False,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
        allow_absolute_paths: bool = False,
    ):
        records = _AnnotationStream(annotation_files, image_root, allow_absolute_paths)
        self._setup(records, transform, max_words, strict, seed, rank, world_size, max_image_pixels)

    @classmethod
    def from_hf_dataset(
        cls,
        dataset,
        image_column: str = "image",
        text_column: str = "caption",
        transform=None,
        max_words: int | None = 30,
        strict: bool = False,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
    ) -> "StreamingCaptionDataset":
        """Stream a Hugging Face `datasets.IterableDataset` (e.g. `load_dataset(..., streaming=True)`) with an image
        column and a text column (a string or a list of strings per record).

        Ranks are split with `datasets.distributed.split_dataset_by_node` (by shards when the dataset's number of
        shards is a multiple of the world size, else by examples) and DataLoader workers by `datasets` itself, by
        shards: use at most `dataset.num_shards` workers per rank (extra workers stay idle). The record index of the
        augmentation seed counts within the rank and worker.
        """
        stream = cls.__new__(cls)
        records = _HFStream(dataset, image_column, text_column)
        stream._setup(records, transform, max_words, strict, seed, rank, world_size, max_image_pixels)
        return stream

    @classmethod
    def from_shards(
        cls,
        data_files,
        image_column: str = "image",
        text_column: str = "caption",
        transform=None,
        max_words: int | None = 30,
        strict: bool = False,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
        shuffle_buffer: int = 0,
    ) -> "StreamingCaptionDataset":
        """Stream WebDataset tar shards or Parquet files of image–caption pairs (e.g. img2dataset's output).

        Args:
            data_files (path, pattern or list of them): `.tar` (`.tar.gz`, `.tgz`) archives or `.parquet` files, not
                both; patterns as `expand_data_files` reads them (`shards/{00000..00099}.tar`, `data/*.parquet`).
            image_column (`str`), text_column (`str`): the Parquet columns of the encoded images (binary, or a
                `datasets.Image` struct with `bytes`) and of the captions (a string or a list of strings per row).
                When the default column is missing, the first present of `IMAGE_KEYS` (jpg, jpeg, png, webp),
                respectively `TEXT_COLUMNS` (caption, text, txt), is read. Unused for WebDataset shards, whose
                image is the sample's `jpg`, `jpeg`, `png` or `webp` file (the first present, in this order) and
                whose caption is its `txt` file, else the `caption` of its `json` file.
            shuffle_buffer (`int`): when positive, the shard order is shuffled every epoch (from `seed` and the
                epoch, the same on every rank) and pairs pass through a shuffle buffer of this many records. With 0,
                the first epoch reads the files in order (`datasets` draws the shard order of later epochs from the
                epoch).
            transform, max_words, strict, seed, rank, world_size, max_image_pixels: as for the constructor.

        Ranks and workers are split as in `from_hf_dataset`, with one `datasets` shard per tar file or Parquet row
        group: with `world_size × num_workers` or more of them, each rank and worker reads whole shards of its own.
        A sample without an image or caption, an undecodable image, a caption that is not UTF-8 and an archive that
        cannot be read further are bad records, skipped and reported with their source (`file, sample KEY` or
        `file, row N`).

        Raises:
            FileNotFoundError: for a path or pattern that matches no file.
            ValueError: for files that are not all shards of one kind, a Parquet file that cannot be read or lacks
                the columns, or columns of the wrong type.
        """
        files = expand_data_files(data_files)
        kind = shard_format(files)
        if kind == "webdataset":
            dataset = datasets.IterableDataset.from_generator(
                _webdataset_records, features=_SHARD_FEATURES, gen_kwargs={"shards": files}
            )
        elif kind == "parquet":
            pieces, image_column, text_column = _parquet_pieces(files, image_column, text_column)
            dataset = datasets.IterableDataset.from_generator(
                _parquet_records,
                features=_SHARD_FEATURES,
                gen_kwargs={"pieces": pieces, "image_column": image_column, "text_column": text_column},
            )
        else:
            raise ValueError(f"from_shards reads .tar or .parquet files, got {files[0]}; use the constructor.")
        if shuffle_buffer > 0:
            dataset = dataset.shuffle(seed=seed, buffer_size=shuffle_buffer)
        stream = cls.__new__(cls)
        stream._setup(_ShardStream(dataset), transform, max_words, strict, seed, rank, world_size, max_image_pixels)
        return stream

    def _setup(self, records, transform, max_words, strict, seed, rank, world_size, max_image_pixels) -> None:
        if (rank is None) != (world_size is None) or (rank is not None and not 0 <= rank < world_size):
            raise ValueError(f"Give both rank and world_size, with 0 <= rank < world_size; got {rank}, {world_size}.")
        _PairItems.__init__(self, transform, max_words, strict, seed, max_image_pixels)
        self.records = records
        self.rank, self.world_size = rank, world_size

    def _rank_and_world_size(self) -> tuple[int, int]:
        if self.rank is not None:
            return self.rank, self.world_size
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def __iter__(self) -> Iterator[dict]:
        """Items of this shard, pass after pass, forever."""
        rank, world_size = self._rank_and_world_size()
        skipped: list[SkippedSample] = []
        for epoch in itertools.count(self.epoch):
            records, items = yield from self._epoch_items(epoch, rank, world_size, skipped)
            if records and not items:
                raise ValueError(f"Every record of this shard was bad for a whole pass; the first: {skipped[0]}.")
            if not records and torch.utils.data.get_worker_info() is not None:
                logger.warning("Rank %d: a DataLoader worker got no records (more shards than records).", rank)
                return
            if not records:
                raise ValueError(f"Rank {rank} of {world_size} got no records: use fewer processes or more data.")

    def _epoch_items(self, epoch: int, rank: int, world_size: int, skipped: list[SkippedSample]):
        """Yield the good items of one pass over this shard; collect bad records in `skipped` (emptied as they are
        handed to an item). Returns `(records, items)`: the numbers of records read and of items yielded."""
        records = items = 0
        for records, (index, pairs) in enumerate(self.records.shard(epoch, rank, world_size), 1):
            for number, pair in enumerate(pairs):
                try:
                    item = self._item(pair, epoch, (index, number), tuple(skipped))
                except _BadRecordError as error:
                    if self.strict:
                        raise
                    skipped.append(error.skipped)
                    continue
                skipped.clear()
                items += 1
                yield item
        return records, items


# ---------------------------------------------------------------------------------------------------------------
# Collator
# ---------------------------------------------------------------------------------------------------------------


class PretrainingCollator:
    """Batch dataset items for `MamoForPreTraining`.

    Args:
        processor (`MamoProcessor`): resizes and normalises the images and tokenises the captions.
        max_length (`int`): captions are truncated to this many tokens (special tokens included).

    Calling it on a list of items returns a dict with `pixel_values` (`[batch, 3, H, W]` float), `input_ids` and
    `attention_mask` (`[batch, length]` long, padded to the longest caption, `length <= max_length`), `image_ids`
    (`[batch]` long), `sample_keys` (`[batch]` long, the seeds of each pair's masks) and `skipped` (a flat list of
    the batch's `SkippedSample`s). The training loop pops `sample_keys` and `skipped` before the model call.
    """

    def __init__(self, processor, max_length: int = 40):
        self.processor = processor
        self.max_length = max_length

    def __call__(self, items: Sequence[dict]) -> dict:
        batch = self.processor(
            images=[item["image"] for item in items],
            text=[item["caption"] for item in items],
            padding="longest",
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        return {
            **batch,
            "image_ids": torch.tensor([item["image_id"] for item in items], dtype=torch.long),
            "sample_keys": torch.tensor([item["sample_key"] for item in items], dtype=torch.long),
            "skipped": [skipped for item in items for skipped in item["skipped"]],
        }
