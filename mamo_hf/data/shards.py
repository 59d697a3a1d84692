"""WebDataset and Parquet shards of image–caption pairs (e.g. img2dataset's output), read as a streaming dataset.

`shard_format` tells shards from caption files. `shard_dataset` reads WebDataset tar archives (`.tar`, `.tar.gz`,
`.tgz`) or Parquet files as a `datasets.IterableDataset` of records (`source`, `image`, `caption`, `error`) with one
`datasets` shard per tar file or Parquet row group, so that ranks, DataLoader workers and epochs are split as for any
streaming Hugging Face dataset; `shard_pairs` turns a record into its pairs. A sample without an image or caption, a
caption that is not UTF-8 and an archive or row group that cannot be read further are records carrying the reason,
so that they are skipped and reported like any bad record, naming their source (`file, sample KEY` or `file, row N`).
"""

import json
import logging
import os
import tarfile
from collections.abc import Iterator, Sequence

import datasets
import pyarrow as pa
import pyarrow.parquet as pq

from .records import Pair, caption_list, stable_id

logger = logging.getLogger(__name__)

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


# A tar member larger than this is not read: one member of a compressed shard could otherwise expand to gigabytes.
MAX_MEMBER_BYTES = 256 * 2**20


def _has_end_of_archive(path: str) -> bool:
    """Whether an uncompressed tar file ends with the end-of-archive marker (zero blocks): an archive cut short at a
    block boundary reads as if it had simply ended."""
    size = os.path.getsize(path)
    if size < 1024:
        return False
    with open(path, "rb") as handle:
        handle.seek(size - 1024)
        return not handle.read().strip(b"\0")


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
            if member.size > MAX_MEMBER_BYTES:
                fields["too_large"] = member.name.encode()  # the sample is skipped (`_webdataset_records`)
                continue
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
        captions = caption_list(metadata.get("caption") if isinstance(metadata, dict) else None)
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
                    if "too_large" in fields:
                        raise ValueError(
                            f"file too large: {fields['too_large'].decode()} is above {MAX_MEMBER_BYTES} bytes"
                        )
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
            continue
        if path.lower().endswith(".tar") and not _has_end_of_archive(path):
            after = f" after sample {key}" if key is not None else ""
            yield _shard_record(path, error=f"unreadable shard: the archive is cut short{after} (no end-of-archive)")


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
def shard_dataset(files: Sequence[str], image_column: str = "image", text_column: str = "caption"):
    """The records of WebDataset or Parquet shards as a `datasets.IterableDataset` (records of `_SHARD_FEATURES`), read
    by `_webdataset_records` / `_parquet_records` with one `datasets` shard per tar file or Parquet row group.

    Args:
        files (`Sequence[str]`): the shards, all `.tar` (`.tar.gz`, `.tgz`) archives or all `.parquet` files.
        image_column (`str`), text_column (`str`): the Parquet columns to read (see `_parquet_pieces`); unused for
            WebDataset shards.

    Raises:
        ValueError: for files that are not all shards of one kind, a Parquet file that cannot be read or lacks the
            columns, or columns of the wrong type.
    """
    kind = shard_format(files)
    if kind == "webdataset":
        return datasets.IterableDataset.from_generator(
            _webdataset_records, features=_SHARD_FEATURES, gen_kwargs={"shards": files}
        )
    if kind == "parquet":
        pieces, image_column, text_column = _parquet_pieces(files, image_column, text_column)
        return datasets.IterableDataset.from_generator(
            _parquet_records,
            features=_SHARD_FEATURES,
            gen_kwargs={"pieces": pieces, "image_column": image_column, "text_column": text_column},
        )
    raise ValueError(f"{files[0]}: not a WebDataset (.tar) or Parquet (.parquet) shard.")


def shard_pairs(record: dict) -> list[Pair]:
    """The pairs of one record of `shard_dataset`: one per caption, or one carrying the record's error. `image_id` is a
    hash of the image bytes: pairs of the same image, wherever they are stored, share it."""
    source = record["source"]
    if record["error"] is not None:
        return [Pair(source, None, None, image_id=-1, error=record["error"])]
    image_id = stable_id(record["image"] or source)
    return [Pair(source, record["image"], caption, image_id) for caption in caption_list(record["caption"])]
