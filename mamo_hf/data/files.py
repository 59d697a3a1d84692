"""Data files: the paths, globs and brace ranges that name them, and the caption annotation files they hold.

`expand_data_files` turns paths, globs and brace ranges (`shards/{00000..00099}.tar`) into files.

Annotation files, by suffix: `.json` (a list of `{"image": path, "caption": str or list of str}`, `json_records`),
`.jsonl` (one such object per line, decoded lazily by `parse_record`, so that a bad line is one bad record) and
`.csv` (columns `image` and `caption`). `READERS` reads all three, `STREAMING_READERS` the two that can be read line
by line. `raw_records` yields the records of several files in order and `parse_record` turns one into its image path
and captions, keeping image paths under the image root.
"""

import csv
import glob
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .records import caption_list

logger = logging.getLogger(__name__)

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
    """The files named by one or several paths or patterns, in order: a path that names a file is that file (braces
    or glob characters in its name included); otherwise braces are expanded (`expand_braces`), then
    each name that is not an existing file is read as a glob (`*`, `?`, `[...]`, `**`), whose matches are sorted. A
    pattern gives each file once; a file named by several patterns is read as often. Names of a brace pattern that
    match nothing are left out with a warning (a shard list with gaps still trains on the shards it has).

    Raises:
        FileNotFoundError: naming the first pattern (or path) that matches no file.
        ValueError: naming a path that exists but is a folder, a pipe or a device, not a file.
    """
    if isinstance(patterns, (str, os.PathLike)):
        patterns = [patterns]
    files = []
    for pattern in map(str, patterns):
        names = [pattern] if os.path.isfile(pattern) else expand_braces(pattern)  # a file named with braces is a file
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
            if not is_pattern and os.path.isdir(pattern):
                raise ValueError(f"{pattern}: a folder, not a file; name the files in it (e.g. '{pattern}/*.json').")
            if not is_pattern and os.path.exists(pattern):
                raise ValueError(f"{pattern}: not a regular file (a pipe or a device); give a file.")
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


def has_types(record: Any, fields: dict[str, type | tuple]) -> bool:
    """Whether `record` is an object whose fields have the given types (`bool` is no number here)."""
    return isinstance(record, dict) and all(
        isinstance(record.get(name), kind) and not isinstance(record.get(name), bool) for name, kind in fields.items()
    )


def _not_utf8(file: Path, error: UnicodeDecodeError) -> ValueError:
    return ValueError(f"{file}: not UTF-8 text (byte {error.start}: {error.reason}); convert it to UTF-8.")


def read_json(file: str | Path) -> Any:
    """The JSON value of a file; a byte-order mark before it is skipped.

    Raises:
        ValueError: naming the file, for text that is not UTF-8 or not valid JSON.
    """
    with open(file, encoding="utf-8-sig") as handle:  # a byte-order mark is not part of the JSON
        try:
            return json.load(handle)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"{file}: not valid JSON (line {error.lineno}, column {error.colno}): {error.msg}"
            ) from None
        except UnicodeDecodeError as error:
            raise _not_utf8(Path(file), error) from None


def json_records(
    file: str | Path, holds: str = "{'image': ..., 'caption': ...} records", allow_empty: bool = True
) -> Iterator[tuple[str, dict]]:
    """`(where, record)` for the records of a JSON file holding a list of records (`holds` says which, for the
    errors), `where` naming the file and the record's number (`"file.json, record 3"`).

    Raises:
        ValueError: naming the file, for text that is not UTF-8, not valid JSON, not a JSON list, or (unless
            `allow_empty`) an empty list.
    """
    records = read_json(file)
    if not isinstance(records, list):
        raise ValueError(f"{file}: expected a JSON list of {holds}.")
    if not records and not allow_empty:
        raise ValueError(f"{file}: an empty list; expected {holds}.")
    for number, record in enumerate(records):
        yield f"{file}, record {number}", record


class _JsonLine(str):
    """A line of a JSONL file, JSON text still to decode (unlike a JSON file's records, already decoded)."""


def _jsonl_lines(file: Path) -> Iterator[tuple[str, _JsonLine | bytes]]:
    """The non-blank lines, decoded; a line that is not UTF-8 stays bytes (a bad record for `parse_record`)."""
    with open(file, "rb") as handle:
        for number, line in enumerate(handle, 1):
            try:
                text = line.decode("utf-8-sig" if number == 1 else "utf-8")  # a byte-order mark opens line 1
            except UnicodeDecodeError:
                yield f"{file}, line {number}", line
                continue
            if text.strip():
                yield f"{file}, line {number}", _JsonLine(text)


def _csv_rows(file: Path) -> Iterator[tuple[str, dict]]:
    """`(where, row)` for the rows of a CSV file with the columns `image` and `caption`; raises `ValueError` naming
    the file for another header or text that is not UTF-8."""
    with open(file, newline="", encoding="utf-8-sig") as handle:
        try:
            reader = csv.DictReader(handle)
            if not {"image", "caption"} <= set(reader.fieldnames or ()):
                raise ValueError(f"{file}: the CSV header must name the columns 'image' and 'caption'.")
            for row in reader:
                yield f"{file}, line {reader.line_num}", row
        except UnicodeDecodeError as error:
            raise _not_utf8(file, error) from None


# Readers yield (where, raw record): an object (JSON, CSV) or a line of text to decode (JSONL).
READERS = {".json": json_records, ".jsonl": _jsonl_lines, ".csv": _csv_rows}
STREAMING_READERS = {".jsonl": _jsonl_lines, ".csv": _csv_rows}


def annotation_paths(annotation_files, readers: dict) -> list[Path]:
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


def parse_record(where: str, raw: str | bytes | dict, root: str, allow_outside_root: bool) -> tuple[str, list]:
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
    captions = caption_list(record["caption"])
    if not all(caption is None or isinstance(caption, str) for caption in captions):
        raise ValueError(f"{where}: 'caption' must be a string or a list of strings, got {record['caption']!r:.200}")
    path = os.path.normpath(os.path.join(root, image))
    if not allow_outside_root and not path.startswith(os.path.join(root, "")):
        raise ValueError(
            f"{where}: the image path {image!r} leads out of the image root {root}; give an image root that holds "
            "it (--image-root, --image_root in the examples) or allow it with allow_absolute_paths=True "
            "(--allow-absolute-image-paths)"
        )
    return path, captions


def raw_records(paths: list[Path], image_root, readers: dict) -> Iterator[tuple[str, str | dict, str]]:
    """`(where, raw record, image root)` for every record of the files, in order, read lazily."""
    for path in paths:
        root = os.path.abspath(image_root if image_root is not None else path.parent)
        for where, raw in readers[path.suffix.lower()](path):
            yield where, raw, root
