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
"""Checks of the files, folders and models that a command's arguments name, shared by `mamo-hf pretrain`,
`mamo-hf init-base` and the `Trainer` examples: each raises `InvalidArgumentError` with one line that starts with the
flag as the command spells it (`--image-root`, `--image_root`), before any work."""

import os
from pathlib import Path

from transformers import AutoTokenizer, PretrainedConfig

from .configuration_mamo import MamoConfig
from .errors import InvalidArgumentError, first_line
from .hub import REPO_ID

# The largest image side accepted for training: 4096 px is already 65,536 patches of 16 px per image (mamo-base trains
# at 256 px); beyond it a run only fills the memory (100,000 px took 22 GB before being killed).
MAX_IMAGE_SIZE = 4096

# The files a saved tokenizer has one of (fast tokenizers, WordPiece, BPE, SentencePiece).
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model")


def check_model_location(location: str | None, flag: str) -> None:
    """`location` (of `flag`, e.g. "--init"): an existing local folder, or a name that can be a Hub repository
    (`user/name`); `None` passes."""
    if location is None:
        return
    path = Path(location)
    if path.exists():
        if not path.is_dir():
            raise InvalidArgumentError(f"{flag} {location}: a file; give the folder written by save_pretrained.")
        return
    if not REPO_ID.match(location) or location.startswith(".") or "//" in location:
        raise InvalidArgumentError(f"{flag} {location}: no such folder (and not a Hub repository name).")


def check_existing_path(path: str | os.PathLike | None, flag: str, folder: bool = False) -> None:
    """`path` must exist (and be a folder, with `folder`); `None` passes."""
    if path is None or path == "":
        return
    if not Path(path).exists():
        raise InvalidArgumentError(f"{flag} {path}: no such file or folder.")
    if folder and not Path(path).is_dir():
        raise InvalidArgumentError(f"{flag} {path}: not a folder.")


def prepare_output_folder(path: str | os.PathLike, flag: str) -> None:
    """The folder a run writes into: not empty as a name, not a file, created when missing, writable."""
    if str(path).strip() == "":
        raise InvalidArgumentError(f"{flag} is empty: name the folder to write.")
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise InvalidArgumentError(f"{flag} {folder} is a file, not a folder.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InvalidArgumentError(f"{flag} {folder}: cannot create it ({error.strerror}).") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InvalidArgumentError(f"{flag} {folder} is not writable.")


def load_tokenizer(location: str, flag: str):
    """The tokenizer saved at `location` (a folder or a Hub name) given with `flag`; `InvalidArgumentError` naming
    the flag when there is none, or when it has no vocabulary beyond its special tokens (transformers builds such an
    empty tokenizer from a folder holding only a BERT config)."""
    folder = Path(location)
    if folder.is_dir() and not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise InvalidArgumentError(
            f"{flag} {location}: no tokenizer in this folder (none of {', '.join(TOKENIZER_FILES)})."
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(location)
    except (OSError, ValueError) as error:
        where = "" if folder.exists() else "no such folder, and as a Hub name: "
        raise InvalidArgumentError(f"{flag} {location}: {where}no usable tokenizer ({first_line(error)})") from None
    if len(tokenizer) <= len(set(tokenizer.all_special_ids)):
        raise InvalidArgumentError(
            f"{flag} {location}: a tokenizer without a vocabulary (only its {len(tokenizer)} special tokens); give "
            "a folder with a BERT tokenizer's vocab.txt or tokenizer.json."
        )
    return tokenizer


def check_saved_mamo(location: str, flag: str) -> None:
    """`location` (a folder or a Hub name) must hold a saved MAMO: `InvalidArgumentError` naming `flag` when it has no
    config.json with a model_type, or that of another model."""
    try:
        model_type = PretrainedConfig.get_config_dict(location)[0].get("model_type")
    except (OSError, ValueError) as error:
        raise InvalidArgumentError(f"{flag} {location}: not a saved model ({first_line(error)})") from None
    if model_type is None:
        raise InvalidArgumentError(f"{flag} {location}: not a saved model (no config.json with a model_type).")
    if model_type != MamoConfig.model_type:
        raise InvalidArgumentError(
            f"{flag} {location}: a {model_type} checkpoint, not MAMO; make a MAMO from a ViT and a BERT with "
            "`mamo-hf init-base`."
        )


__all__ = [
    "MAX_IMAGE_SIZE",
    "check_existing_path",
    "check_model_location",
    "check_saved_mamo",
    "load_tokenizer",
    "prepare_output_folder",
]
