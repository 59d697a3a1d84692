"""Image–caption datasets for pre-training, from files, Hugging Face datasets, streams and shards.

Every dataset here yields the items of `mamo_hf.data.records` (`image`, `caption`, `image_id`, `skipped`,
`sample_key`), with the settings of one `CaptionOptions`. The sources: `CaptionDataset` (ALBEF-style caption JSON,
JSONL or CSV files and an image folder), `HFCaptionDataset` (a local Hugging Face `datasets.Dataset`),
`StreamingCaptionDataset` (JSONL/CSV files read line by line, a streaming `datasets.IterableDataset`, or
WebDataset/Parquet shards), and `DemoCaptionDataset` in `mamo_hf.data.demo`. `MapCaptionDataset` is the base of the
map-style ones.

Bad records (a missing or unreadable image, a caption that is empty once cleaned) never stop a run: they are
skipped and reported exactly once per epoch in the `skipped` field of the item that takes their place, and
`PretrainingCollator` gathers them per batch for the training loop to count. With `CaptionOptions(strict=True)` the
first bad record raises a `ValueError` that names it instead.
"""

import itertools
import logging
from collections.abc import Iterator

import datasets
import numpy as np
import pyarrow.compute as pc
import torch
from datasets.distributed import split_dataset_by_node

from .files import READERS, STREAMING_READERS, annotation_paths, expand_data_files, parse_record, raw_records
from .records import (
    BadRecordError,
    CaptionOptions,
    ItemBuilder,
    NoUsableRecordsError,
    Pair,
    SkippedSample,
    caption_list,
    stable_id,
)
from .shards import shard_dataset, shard_format, shard_pairs
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


def _undecoded(dataset, image_column: str, text_column: str):
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
        return np.array([len(caption_list(value)) for value in self.dataset[self.text_column]], dtype=np.int64)

    def __len__(self) -> int:
        return len(self._rows)

    def _pair(self, index: int) -> Pair:
        row = int(self._rows[index])
        record = self.dataset[row]
        path, image = _hf_image(record[self.image_column])
        caption = caption_list(record[self.text_column])[self._caption_numbers[index]]
        return Pair(source=path or f"row {row}", image=image, caption=caption, image_id=int(self._image_ids[row]))


# ---------------------------------------------------------------------------------------------------------------
# Streaming
# ---------------------------------------------------------------------------------------------------------------


def _worker_id_and_count() -> tuple[int, int]:
    info = torch.utils.data.get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


class _AnnotationStream:
    """The records of JSONL/CSV annotation files, read line by line, sharded by record over ranks and workers."""

    def __init__(self, annotation_files, image_root, allow_absolute_paths: bool):
        self.paths = annotation_paths(annotation_files, STREAMING_READERS)
        self.image_root = image_root
        self.allow_absolute_paths = allow_absolute_paths

    def shard(self, epoch: int, rank: int, world_size: int) -> Iterator[tuple[int, list[Pair]]]:
        """`(running record index, pairs)` of the records of this rank and DataLoader worker: those whose index
        modulo `world_size * num_workers` is `rank * num_workers + worker_id`. A record that cannot be parsed gives
        one pair carrying the error."""
        worker_id, num_workers = _worker_id_and_count()
        shard, num_shards = rank * num_workers + worker_id, world_size * num_workers
        records = raw_records(self.paths, self.image_root, STREAMING_READERS)
        for index, (where, raw, root) in enumerate(records):
            if index % num_shards == shard:
                yield index, self._pairs(where, raw, root)

    def _pairs(self, where: str, raw: str | bytes | dict, root: str) -> list[Pair]:
        try:
            image_path, captions = parse_record(where, raw, root, self.allow_absolute_paths)
        except ValueError as error:
            return [Pair(source=where, image=None, caption=None, image_id=-1, error=f"bad annotation: {error}")]
        image_id = stable_id(image_path)
        source = record_source(where, image_path)
        return [Pair(source=source, image=image_path, caption=caption, image_id=image_id) for caption in captions]


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

    def shard(self, epoch: int, rank: int, world_size: int) -> Iterator[tuple[tuple[int, int, int], list[Pair]]]:
        """`((rank, worker_id, running index), pairs)` of the records of this rank and worker, in epoch `epoch`."""
        dataset = split_dataset_by_node(self.dataset, rank=rank, world_size=world_size)
        dataset.set_epoch(epoch)
        worker_id, _ = _worker_id_and_count()
        for index, record in enumerate(dataset):
            yield (rank, worker_id, index), self._pairs(record, f"record {index} of rank {rank}, worker {worker_id}")

    def _pairs(self, record: dict, place: str) -> list[Pair]:
        """The pairs of one record; `place` names it when its image has no path."""
        path, image = _hf_image(record[self.image_column])
        source = path or place
        image_id = stable_id(path or image or source)
        return [Pair(source, image, caption, image_id) for caption in caption_list(record[self.text_column])]


class _ShardStream(_HFStream):
    """The records of WebDataset or Parquet shards. They are read by `mamo_hf.data.shards.shard_dataset` as a
    `datasets.IterableDataset` with one `datasets` shard per tar file or Parquet row group, so that ranks, DataLoader
    workers and epochs are split as for any streaming Hugging Face dataset (`_HFStream.shard`).

    `image_id` is a hash of the image bytes: pairs of the same image, wherever they are stored, share it.
    """

    def __init__(self, dataset: datasets.IterableDataset):
        self.dataset = dataset

    def _pairs(self, record: dict, place: str) -> list[Pair]:
        return shard_pairs(record)


class StreamingCaptionDataset(ItemBuilder, torch.utils.data.IterableDataset):
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
        image_root, options (`CaptionOptions`, *optional*): as for `CaptionDataset`.
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
        options: CaptionOptions | None = None,
        rank: int | None = None,
        world_size: int | None = None,
    ):
        options = options if options is not None else CaptionOptions()
        records = _AnnotationStream(annotation_files, image_root, options.allow_absolute_paths)
        self._setup(records, options, rank, world_size)

    @classmethod
    def from_hf_dataset(
        cls,
        dataset,
        image_column: str = "image",
        text_column: str = "caption",
        options: CaptionOptions | None = None,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> "StreamingCaptionDataset":
        """Stream a Hugging Face `datasets.IterableDataset` (e.g. `load_dataset(..., streaming=True)`) with an image
        column and a text column (a string or a list of strings per record).

        Ranks are split with `datasets.distributed.split_dataset_by_node` (by shards when the dataset's number of
        shards is a multiple of the world size, else by examples) and DataLoader workers by `datasets` itself, by
        shards: use at most `dataset.num_shards` workers per rank (extra workers stay idle). The record index of the
        augmentation seed counts within the rank and worker. `options` (`CaptionOptions`, *optional*), `rank` and
        `world_size` are as for the constructor (`allow_absolute_paths` does not apply).
        """
        stream = cls.__new__(cls)
        records = _HFStream(dataset, image_column, text_column)
        stream._setup(records, options, rank, world_size)
        return stream

    @classmethod
    def from_shards(
        cls,
        data_files,
        image_column: str = "image",
        text_column: str = "caption",
        options: CaptionOptions | None = None,
        rank: int | None = None,
        world_size: int | None = None,
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
            options (`CaptionOptions`, *optional*), rank (`int`, *optional*), world_size (`int`, *optional*): as for
                the constructor (`allow_absolute_paths` does not apply).
            shuffle_buffer (`int`): when positive, the shard order is shuffled every epoch (from the options' `seed`
                and the epoch, the same on every rank) and pairs pass through a shuffle buffer of this many records.
                With 0, the first epoch reads the files in order (`datasets` draws the shard order of later epochs
                from the epoch).

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
        options = options if options is not None else CaptionOptions()
        files = expand_data_files(data_files)
        if shard_format(files) is None:
            raise ValueError(f"from_shards reads .tar or .parquet files, got {files[0]}; use the constructor.")
        dataset = shard_dataset(files, image_column, text_column)
        if shuffle_buffer > 0:
            dataset = dataset.shuffle(seed=options.seed, buffer_size=shuffle_buffer)
        stream = cls.__new__(cls)
        stream._setup(_ShardStream(dataset), options, rank, world_size)
        return stream

    def _setup(self, records, options: CaptionOptions | None, rank: int | None, world_size: int | None) -> None:
        if (rank is None) != (world_size is None) or (rank is not None and not 0 <= rank < world_size):
            raise ValueError(f"Give both rank and world_size, with 0 <= rank < world_size; got {rank}, {world_size}.")
        ItemBuilder.__init__(self, options)
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
                raise NoUsableRecordsError(
                    f"Every record of this shard was bad for a whole pass; the first: {skipped[0].source}: "
                    f"{skipped[0].reason}."
                )
            if not records and torch.utils.data.get_worker_info() is not None:
                logger.warning("Rank %d: a DataLoader worker got no records (more shards than records).", rank)
                return
            if not records:
                raise NoUsableRecordsError(
                    f"Rank {rank} of {world_size} got no records: the data is empty, or use fewer processes."
                )

    def _epoch_items(self, epoch: int, rank: int, world_size: int, skipped: list[SkippedSample]):
        """Yield the good items of one pass over this shard; collect bad records in `skipped` (emptied as they are
        handed to an item). Returns `(records, items)`: the numbers of records read and of items yielded."""
        records = items = 0
        for records, (index, pairs) in enumerate(self.records.shard(epoch, rank, world_size), 1):
            for number, pair in enumerate(pairs):
                try:
                    item = self._item(pair, epoch, (index, number), tuple(skipped))
                except BadRecordError as error:
                    if self.strict:
                        raise
                    skipped.append(error.skipped)
                    continue
                skipped.clear()
                items += 1
                yield item
        return records, items
