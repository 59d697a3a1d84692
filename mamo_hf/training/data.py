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
"""The data of a pre-training run: the training pairs (caption files, shards, a `datasets` folder, a stream or the
built-in demo data), their loader, the held-out pairs of the zero-shot evaluation, and the one-line errors of data
that cannot be read."""

import contextlib
import re

import datasets
import torch
from accelerate import PartialState
from torch.utils.data import DataLoader
from transformers.utils import logging

from ..data import (
    CaptionDataset,
    CaptionNegatives,
    CaptionOptions,
    DemoCaptionDataset,
    HFCaptionDataset,
    PretrainingCollator,
    StreamingCaptionDataset,
    TrainTransform,
    expand_data_files,
    shard_format,
)
from ..data.records import BadRecordError
from ..errors import BadDataError, InvalidArgumentError, PretrainingError, first_line
from ..losses_mamo import JointMasking
from .arguments import PretrainingArguments
from .sampling import EpochShuffleSampler

logger = logging.get_logger(__name__)


def build_train_dataset(args: PretrainingArguments, image_size: int):
    """The training pairs: caption files, WebDataset/Parquet shards, a local `datasets` folder, a stream, or the
    built-in demo data."""
    if args.demo_minimal_pairs and (args.train_file or args.hf_dataset or args.batch_size % 2):
        raise ValueError(
            "`--demo-minimal-pairs` applies to the built-in demo data only and needs an even `--batch-size` (each "
            f"batch holds whole pairs); got batch size {args.batch_size}"
            + (" and a --train-file/--hf-dataset." if args.train_file or args.hf_dataset else ".")
        )
    transform = TrainTransform(image_size, caption_safe=args.caption_safe_crops) if args.augment else None
    options = CaptionOptions(
        transform=transform,
        max_words=args.max_words,
        strict=args.strict,
        seed=args.seed,
        max_image_pixels=args.max_image_pixels or None,
        allow_absolute_paths=args.allow_absolute_image_paths,
    )
    if args.hf_dataset:
        return HFCaptionDataset(_train_split(args.hf_dataset), args.image_column, args.text_column, options)
    train_files = expand_data_files(args.train_file) if args.train_file else []
    if shard_format(train_files):
        return StreamingCaptionDataset.from_shards(
            train_files, args.image_column, args.text_column, options, shuffle_buffer=args.shuffle_buffer
        )
    if train_files and args.streaming:
        if args.max_steps is None:
            raise InvalidArgumentError("--streaming: a streaming run is step-based, give --max-steps.")
        return StreamingCaptionDataset(train_files, args.image_root, options)
    if train_files:
        return CaptionDataset(train_files, args.image_root, options)
    return DemoCaptionDataset(
        args.demo_pairs,
        seed=args.seed,
        image_size=image_size,
        max_objects=args.demo_max_objects,
        transform=transform,
        max_words=args.max_words,
        minimal_pairs=args.demo_minimal_pairs,
        templates=tuple(args.demo_templates),
    )


def _train_split(folder: str) -> datasets.Dataset:
    """The dataset `save_to_disk` wrote to `folder`; of a `DatasetDict`, its "train" split."""
    try:
        loaded = datasets.load_from_disk(folder)
    except Exception as error:  # datasets' own errors for a damaged folder: IndexError, KeyError, ArrowInvalid...
        raise BadDataError(
            f"--hf-dataset {folder}: not a dataset that datasets.load_from_disk can read ({type(error).__name__}: "
            f"{first_line(error)}); write it with Dataset.save_to_disk."
        ) from None
    if not isinstance(loaded, datasets.DatasetDict):
        return loaded
    if "train" not in loaded:
        raise InvalidArgumentError(
            f"--hf-dataset {folder}: a DatasetDict without a 'train' split (its splits: {', '.join(loaded)}); save "
            "the split to train on with save_to_disk."
        )
    PartialState().print(
        f"--hf-dataset {folder}: a DatasetDict; training on its 'train' split ({len(loaded['train'])} rows)."
    )
    return loaded["train"]


# Above this share of words read as [UNK], the tokenizer cannot read the training captions: the run is refused.
MAX_UNKNOWN_WORD_SHARE = 0.2


def check_vocabulary(args: PretrainingArguments, dataset, tokenizer) -> None:
    """Own captions read with the built-in demo tokenizer (no `--tokenizer`, no `--init`): refuse when more than
    `MAX_UNKNOWN_WORD_SHARE` of their words become [UNK] (warn above 1 %), naming the flag that fixes it."""
    if args.init or args.tokenizer or not (args.train_file or args.hf_dataset):
        return
    if not hasattr(dataset, "sample_captions"):  # a stream: not read ahead
        return
    words = [word for caption in dataset.sample_captions() for word in caption.split()]
    if not words:
        return
    pieces = tokenizer(words, add_special_tokens=False)["input_ids"]
    share = sum(tokenizer.unk_token_id in word_pieces for word_pieces in pieces) / len(words)
    source = "--train-file" if args.train_file else "--hf-dataset"
    message = (
        f"{source}: {share:.0%} of the words of its captions are unknown to the built-in demo tokenizer "
        f"({len(tokenizer)} tokens), which reads them as [UNK]; pass --tokenizer (a BERT tokenizer folder or Hub "
        "name, e.g. bert-base-uncased) or --init a model saved with its tokenizer."
    )
    if share > MAX_UNKNOWN_WORD_SHARE:
        raise InvalidArgumentError(message)
    if share > 0.01:
        logger.warning(message)


def caption_negative_generator(args: PretrainingArguments) -> CaptionNegatives | None:
    """The rule-based caption negatives of `--caption-negatives` (None when 0), seeded by `--seed`."""
    if args.caption_negatives == 0:
        return None
    return CaptionNegatives(args.caption_negatives, tuple(args.caption_negative_families), seed=args.seed)


def build_loader(args: PretrainingArguments, dataset, processor, config, num_processes: int, rank: int):
    """The run's `DataLoader` and, for a map-style dataset, its `EpochShuffleSampler` (`None` for a stream).

    The collator draws each pair's masks from the pair's key. The loader shards nothing itself (the sampler or the
    stream does) and draws its workers' seeds from its own generator, so that iterating it leaves the global random
    stream alone.
    """
    sampler = None
    if not isinstance(dataset, torch.utils.data.IterableDataset):
        sampler = EpochShuffleSampler(
            len(dataset),
            args.seed,
            batch_size=args.batch_size,
            block_size=2 if getattr(dataset, "minimal_pairs", 0) > 0 else 1,
            num_replicas=num_processes,
            rank=rank,
            batches_per_step=args.gradient_accumulation_steps,
        )
    collator = PretrainingCollator(
        processor,
        args.max_length,
        masking=JointMasking.from_config(config),
        negatives=caption_negative_generator(args),
    )
    loader = DataLoader(
        dataset,
        batch_size=args.batch_size,
        sampler=sampler,
        collate_fn=collator,
        num_workers=args.num_workers,
        drop_last=True,
        generator=torch.Generator().manual_seed(args.seed),
    )
    return loader, sampler


def held_out_pairs(args: PretrainingArguments, image_size: int):
    """Held-out `(images, captions, image_to_texts, text_to_image)` for zero-shot retrieval, or `None`."""
    if args.eval_file:
        options = CaptionOptions(
            max_words=args.max_words,
            max_image_pixels=args.max_image_pixels or None,
            allow_absolute_paths=args.allow_absolute_image_paths,
        )
        dataset = CaptionDataset([args.eval_file], args.image_root, options)
    elif args.eval_pairs > 0 and not (args.train_file or args.hf_dataset):
        dataset = DemoCaptionDataset(
            args.eval_pairs,
            seed=args.seed + 1_000_003,
            image_size=image_size,
            max_objects=args.demo_max_objects,
            max_words=args.max_words,
            templates=tuple(args.demo_templates),
        )
    else:
        return None
    items = [dataset[index] for index in range(len(dataset))]
    image_index, images, image_to_texts, text_to_image = {}, [], [], []
    for text_index, item in enumerate(items):
        if item["image_id"] not in image_index:
            image_index[item["image_id"]] = len(images)
            images.append(item["image"])
            image_to_texts.append([])
        image_to_texts[image_index[item["image_id"]]].append(text_index)
        text_to_image.append(image_index[item["image_id"]])
    return images, [item["caption"] for item in items], image_to_texts, text_to_image


def data_error(args: PretrainingArguments, error: Exception) -> BadDataError:
    """The one-line error of a bad record (`--strict`) or of data without a usable record, met while training; a
    DataLoader worker re-raises those as a `RuntimeError` holding the original's text. Any other error is raised."""
    last_line = str(error).strip().splitlines()[-1] if str(error).strip() else ""
    kind = next((name for name in ("BadRecordError", "NoUsableRecordsError") if name in last_line), None)
    if isinstance(error, RuntimeError) and kind is None:
        raise error
    message = re.sub(r"^[\w.]*(BadRecordError|NoUsableRecordsError): ", "", last_line)
    if isinstance(error, BadRecordError) or kind == "BadRecordError":
        message = message.replace(
            " (they are reported in the items' `skipped` field)", " (they are counted and listed)"
        )
        return BadDataError(f"--strict: {message.replace('pass strict=False', 'drop --strict')}")
    return BadDataError(f"{'--hf-dataset' if args.hf_dataset else '--train-file'}: {message}")


@contextlib.contextmanager
def data_errors_named(flag: str):
    """Turn what the data readers raise for a bad file (a `ValueError` or `OSError` naming it) into a
    `BadDataError` that the command line prints as one line after `flag`."""
    try:
        yield
    except PretrainingError:
        raise
    except (ValueError, OSError) as error:
        raise BadDataError(f"{flag}: {error}") from None


__all__ = ["build_loader", "build_train_dataset", "check_vocabulary", "held_out_pairs"]
