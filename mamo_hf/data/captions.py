"""Image–caption datasets for pre-training, from files, Hugging Face datasets, streams and shards.

Every dataset here yields the items of `mamo_hf.data.records` (`image`, `caption`, `image_id`, `skipped`,
`sample_key`), with the settings of one `CaptionOptions`. The sources: `CaptionDataset` (ALBEF-style caption JSON,
JSONL or CSV files and an image folder), `HFCaptionDataset` (a local Hugging Face `datasets.Dataset`),
`StreamingCaptionDataset` in `mamo_hf.data.streaming` (JSONL/CSV files read line by line, a streaming
`datasets.IterableDataset`, or WebDataset/Parquet shards), and `DemoCaptionDataset` in `mamo_hf.data.demo`.
`MapCaptionDataset` is the base of the map-style ones.

Bad records (a missing or unreadable image, a caption that is empty once cleaned) never stop a run: they are
skipped and reported exactly once per epoch in the `skipped` field of the item that takes their place, and
`PretrainingCollator` gathers them per batch for the training loop to count. With `CaptionOptions(strict=True)` the
first bad record raises a `ValueError` that names it instead.
"""

import itertools
import logging

import datasets
import numpy as np
import pyarrow.compute as pc
import torch

from .files import READERS, annotation_paths, parse_record, raw_records
from .records import (
    BadRecordError,
    CaptionOptions,
    ItemBuilder,
    NoUsableRecordsError,
    Pair,
    SkippedSample,
    caption_list,
)
from .transforms import clean_caption

logger = logging.getLogger(__name__)

MAX_CONSECUTIVE_BAD_RECORDS = 100


class MapCaptionDataset(ItemBuilder, torch.utils.data.Dataset):
    """Base of the map-style datasets: subclasses give `__len__` and `_pair(index)`; this class gives `__getitem__`
    with the skipping of bad records (a bad record is replaced by the next good one, so batches keep their size)."""

    def __len__(self) -> int:
        raise NotImplementedError

    def _pair(self, index: int) -> Pair:
        raise NotImplementedError

    def sample_captions(self, count: int = 200) -> list[str]:
        """The cleaned captions of up to `count` records spread over the dataset, read without their images (to
        check a tokenizer's coverage before training)."""
        step = max(1, len(self) // count)
        captions = (clean_caption(self._pair(index).caption, self.max_words) for index in range(0, len(self), step))
        return [caption for caption in itertools.islice(captions, count) if caption]

    def __getitem__(self, index: int) -> dict:
        """The item at `index`, or, when that record is bad, the next good record after it (wrapping around) with
        the bad record's `SkippedSample` in `skipped`: each bad record is reported once per epoch, when its own
        index is asked for.

        Raises:
            IndexError: for an index out of range.
            ValueError: for a bad record when `strict=True`; `NoUsableRecordsError` (a `ValueError`) when
                `MAX_CONSECUTIVE_BAD_RECORDS` records in a row (or all records) are bad.
        """
        length = len(self)
        if not -length <= index < length:
            raise IndexError(f"index {index} out of range for a dataset of {length} pairs")
        skipped = ()
        for offset in range(min(MAX_CONSECUTIVE_BAD_RECORDS, length)):
            position = (index + offset) % length
            try:
                return self._item(self._pair(position), self.epoch, position, skipped)
            except BadRecordError as error:
                if self.strict:
                    raise
                skipped = skipped or (error.skipped,)
                last = error.skipped
        raise NoUsableRecordsError(
            f"{offset + 1} records in a row from index {index % length} on are bad (the last: {last.source}: "
            f"{last.reason}); check the annotation files and the image folder."
        )


class CaptionDataset(MapCaptionDataset):
    """Image–caption pairs from ALBEF-style annotation files and image files (map-style).

    Formats, by file suffix: `.json` (a list of `{"image": path, "caption": str or list of str}`), `.jsonl` (one
    such object per line) and `.csv` (columns `image` and `caption`). A record with a list of captions gives one pair
    per caption. All annotations are read at construction; images are read when an item is asked for.

    Args:
        annotation_files (path or list of paths): one or several annotation files, read in order.
        image_root (path, *optional*): folder that relative image paths are relative to (default: the folder of the
            annotation file that names them).
        options (`CaptionOptions`, *optional*): transform, caption length, strictness, seed, pixel limit and
            whether image paths may lead out of the image root (default: `CaptionOptions()`).

    Items: see `mamo_hf.data.records`. `image_id` is the index of the image's path in `image_paths`, so that all
    pairs of one image share it.

    Raises:
        ValueError: for an annotation file that is not valid JSON/CSV or not UTF-8 (naming the file), a bad record
            with `strict=True` (naming the file and the record or line), an unknown file suffix, or no usable record.
        FileNotFoundError: for a missing annotation file.
    """

    def __init__(self, annotation_files, image_root=None, options: CaptionOptions | None = None):
        super().__init__(options)
        paths = annotation_paths(annotation_files, READERS)
        image_ids: dict[str, int] = {}
        self._pairs: list[tuple[int, str | None, str]] = []  # image id, caption, the record's place
        for where, raw, root in raw_records(paths, image_root, READERS):
            try:
                image_path, captions = parse_record(where, raw, root, self.options.allow_absolute_paths)
            except ValueError as error:
                if self.strict:
                    raise
                self.annotation_errors.append(SkippedSample(where, f"bad annotation: {error}"))
                continue
            image_id = image_ids.setdefault(image_path, len(image_ids))
            self._pairs.extend((image_id, caption, where) for caption in captions)
        if not self._pairs:
            first_error = f" (the first bad one: {self.annotation_errors[0].reason})" if self.annotation_errors else ""
            raise ValueError(f"No usable records in the annotation files {[str(p) for p in paths]}{first_error}.")
        self.image_paths: list[str] = list(image_ids)

    def __len__(self) -> int:
        return len(self._pairs)

    def _pair(self, index: int) -> Pair:
        image_id, caption, where = self._pairs[index]
        path = self.image_paths[image_id]
        return Pair(source=record_source(where, path), image=path, caption=caption, image_id=image_id)


# ---------------------------------------------------------------------------------------------------------------
# Hugging Face datasets
# ---------------------------------------------------------------------------------------------------------------


def undecoded_columns(dataset, image_column: str, text_column: str):
    """`dataset` with only the two columns, the image column as `Image(decode=False)` (`{"bytes", "path"}`
    dicts), so that images are decoded here and a corrupt one is skipped like any bad record."""
    columns = dataset.column_names
    if columns is not None and not {image_column, text_column} <= set(columns):
        raise ValueError(
            f"The dataset needs an image column {image_column!r} and a text column {text_column!r}; its columns are "
            f"{columns}. Name them with image_column= and text_column= (--image-column and --text-column)."
        )
    if image_column == text_column:
        raise ValueError(
            f"The image column and the text column are both {image_column!r}; name two different columns with "
            "image_column= and text_column= (--image-column and --text-column)."
        )
    image_feature = dataset.features[image_column] if dataset.features is not None else None
    if image_feature is not None and not _is_image_source(image_feature):
        raise ValueError(
            f"The image column {image_column!r} holds {image_feature}, not images (a datasets.Image, image bytes or "
            "an image path per row). Name the image column with image_column= (--image-column)."
        )
    text_feature = dataset.features[text_column] if dataset.features is not None else None
    if text_feature is not None and not _is_text(getattr(text_feature, "feature", text_feature)):  # lists: their items
        raise ValueError(
            f"The text column {text_column!r} holds {text_feature}, not captions (a string, or a list of strings, per "
            "row). Name the caption column with text_column= (--text-column)."
        )
    return dataset.select_columns([image_column, text_column]).cast_column(image_column, datasets.Image(decode=False))


def record_source(where: str, image_path: str) -> str:
    """How a bad record of an annotation file is named: its file and record or line, then its image (records that
    share an image are told apart, and the report counts each)."""
    return f"{where}, image {image_path}"


def _is_text(feature) -> bool:
    return isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string")


def _is_image_source(feature) -> bool:
    """An image column: images, their bytes, or paths to them (a column of only missing values passes: its rows are
    bad records, skipped and counted)."""
    image_values = ("string", "large_string", "binary", "large_binary", "null")
    return isinstance(feature, datasets.Image) or (
        isinstance(feature, datasets.Value) and feature.dtype in image_values
    )


def hf_image(value: dict | None) -> tuple[str | None, str | bytes | None]:
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
        options (`CaptionOptions`, *optional*): as for `CaptionDataset` (`allow_absolute_paths` does not apply).

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
        options: CaptionOptions | None = None,
    ):
        if isinstance(dataset, datasets.IterableDataset):
            raise TypeError("HFCaptionDataset takes a map-style dataset; use StreamingCaptionDataset.from_hf_dataset.")
        super().__init__(options)
        self.dataset = undecoded_columns(dataset, image_column, text_column)
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
        return np.array([len(caption_list(value)) for value in self.dataset[self.text_column]], dtype=np.int64)

    def __len__(self) -> int:
        return len(self._rows)

    def _pair(self, index: int) -> Pair:
        row = int(self._rows[index])
        record = self.dataset[row]
        path, image = hf_image(record[self.image_column])
        caption = caption_list(record[self.text_column])[self._caption_numbers[index]]
        return Pair(source=path or f"row {row}", image=image, caption=caption, image_id=int(self._image_ids[row]))
