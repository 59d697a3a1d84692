# Copyright 2026 The mamo_hf authors. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Streamed image–caption datasets: JSONL/CSV annotation files read line by line, streaming Hugging Face datasets
and WebDataset/Parquet shards (`StreamingCaptionDataset`), split over ranks and DataLoader workers. Their items are
those of `mamo_hf.data.records`, as the map-style datasets' of `mamo_hf.data.captions`."""

import itertools
import logging
from collections.abc import Iterator

import datasets
import torch
from datasets.distributed import split_dataset_by_node

from . import records
from .captions import hf_image, record_source, undecoded_columns
from .files import STREAMING_READERS, annotation_paths, expand_data_files, parse_record, raw_records
from .records import CaptionOptions, ItemBuilder, Pair, stable_id
from .shards import shard_dataset, shard_format, shard_pairs

logger = logging.getLogger(__name__)


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
        for index, (where, raw, root) in enumerate(raw_records(self.paths, self.image_root, STREAMING_READERS)):
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
        self.dataset = undecoded_columns(dataset, image_column, text_column)
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
        path, image = hf_image(record[self.image_column])
        source = path or place
        image_id = stable_id(path or image or source)
        return [Pair(source, image, caption, image_id) for caption in records.caption_list(record[self.text_column])]


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
        source = _AnnotationStream(annotation_files, image_root, options.allow_absolute_paths)
        self._setup(source, options, rank, world_size)

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
        source = _HFStream(dataset, image_column, text_column)
        stream._setup(source, options, rank, world_size)
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

    def _setup(self, source, options: CaptionOptions | None, rank: int | None, world_size: int | None) -> None:
        if (rank is None) != (world_size is None) or (rank is not None and not 0 <= rank < world_size):
            raise ValueError(f"Give both rank and world_size, with 0 <= rank < world_size; got {rank}, {world_size}.")
        ItemBuilder.__init__(self, options)
        self.records = source
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
        skipped: list[records.SkippedSample] = []
        for epoch in itertools.count(self.epoch):
            read, items = yield from self._epoch_items(epoch, rank, world_size, skipped)
            if read and not items:
                raise records.NoUsableRecordsError(
                    f"Every record of this shard was bad for a whole pass; the first: {skipped[0].source}: "
                    f"{skipped[0].reason}."
                )
            if not read and torch.utils.data.get_worker_info() is not None:
                logger.warning("Rank %d: a DataLoader worker got no records (more shards than records).", rank)
                return
            if not read:
                raise records.NoUsableRecordsError(
                    f"Rank {rank} of {world_size} got no records: the data is empty, or use fewer processes."
                )

    def _epoch_items(self, epoch: int, rank: int, world_size: int, skipped: list[records.SkippedSample]):
        """Yield the good items of one pass over this shard; collect bad records in `skipped` (emptied as they are
        handed to an item). Returns `(read, items)`: the numbers of records read and of items yielded."""
        read = items = 0
        for read, (index, pairs) in enumerate(self.records.shard(epoch, rank, world_size), 1):
            for number, pair in enumerate(pairs):
                try:
                    item = self._item(pair, epoch, (index, number), tuple(skipped))
                except records.BadRecordError as error:
                    if self.strict:
                        raise
                    skipped.append(error.skipped)
                    continue
                skipped.clear()
                items += 1
                yield item
        return read, items
