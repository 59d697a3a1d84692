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
"""The checks of `PretrainingArguments` before any work: each raises `InvalidArgumentError` naming the first bad
argument by its flag, as `mamo-hf pretrain` spells it.

`check_values` looks at the values alone: every field against its type and `ArgumentFacts` (bounds, choices), then
the rules that tie fields together. `check_paths` looks at what the values name on disk or on the Hub, with the
checks of `mamo_hf.checks` that `mamo-hf init-base` and the `Trainer` examples share.
"""

import dataclasses
from pathlib import Path

from ..checks import check_existing_path, check_model_location, prepare_output_folder
from ..configuration_mamo import MamoConfig
from ..data import expand_data_files, shard_format
from ..errors import InvalidArgumentError
from ..hub import REPO_ID, upload_problem
from ..modeling_mamo import OBJECTIVES
from .arguments import DEFAULT_NEGATIVE_FAMILIES, FIELD_TYPES, PretrainingArguments, flag, value_problem

PRESET_PATCH_SIZE = 16  # the patch size of the tiny and base presets
PRESETS = ("tiny", "base")
SHARD_NAMES = {"webdataset": "WebDataset", "parquet": "Parquet"}


def validate_arguments(args: PretrainingArguments) -> None:
    """Check every argument that can be checked before any work (`check_values`, then `check_paths`)."""
    check_values(args)
    check_paths(args)


def require(condition: bool, name: str, message: str) -> None:
    """Raise `InvalidArgumentError("--<name> <message>")` unless `condition`."""
    if not condition:
        raise InvalidArgumentError(f"{flag(name)} {message}")


def check_values(args: PretrainingArguments) -> None:
    """Each field's value against its type and facts, then the rules between fields."""
    for name in FIELD_TYPES:
        problem = value_problem(name, getattr(args, name))
        require(problem is None, name, problem)
    _check_learning_rates(args)
    _check_model(args)
    _check_data_sources(args)
    _check_hub(args)


def _check_learning_rates(args: PretrainingArguments) -> None:
    require(
        args.min_learning_rate <= args.learning_rate,
        "min_learning_rate",
        f"({args.min_learning_rate}) must not exceed --learning-rate ({args.learning_rate}).",
    )


def _check_model(args: PretrainingArguments) -> None:
    """A preset or `--init`; `base` with a tokenizer; `--model-config` fields that exist, not switching every
    objective off; an image size that the preset's patches divide."""
    require(
        args.init is not None or args.model in PRESETS,
        "model",
        f"must be tiny or base (or give --init), got {args.model!r}.",
    )
    require(
        args.model == "tiny" or args.tokenizer or args.init,
        "model",
        "base needs --tokenizer (e.g. bert-base-uncased), or start from --init (see `mamo-hf init-base`).",
    )
    unknown = sorted(set(args.model_config) - set(MamoConfig().to_dict()))
    require(not unknown, "model_config", f"has unknown MamoConfig field(s) {unknown}.")
    weights = [args.model_config.get(f"{name}_weight", 1.0) for name in OBJECTIVES]
    require(
        any(isinstance(weight, (int, float)) and weight > 0 for weight in weights),
        "model_config",
        f"turns every objective off (every *_weight of {', '.join(OBJECTIVES)} is 0): keep at least one.",
    )
    require(
        args.init is not None or args.image_size is None or args.image_size % PRESET_PATCH_SIZE == 0,
        "image_size",
        f"{args.image_size} must be a multiple of the patch size {PRESET_PATCH_SIZE}.",
    )


def _check_data_sources(args: PretrainingArguments) -> None:
    """One training set; no flag that it would ignore (an ignored flag is refused, not silently dropped)."""
    require(
        not (args.hf_dataset and args.train_file),
        "hf_dataset",
        "and --train-file name two training sets: give one of them.",
    )
    defaults = {spec.name: spec.default for spec in dataclasses.fields(PretrainingArguments)}
    own_data = args.train_file or args.hf_dataset
    require(
        not own_data or args.eval_pairs in (0, defaults["eval_pairs"]),
        "eval_pairs",
        "draws held-out pairs from the built-in demo data, which --train-file/--hf-dataset replace: give held-out "
        "pairs of your own with --eval-file.",
    )
    families_changed = list(args.caption_negative_families) != list(DEFAULT_NEGATIVE_FAMILIES)
    require(
        args.caption_negatives > 0 or not families_changed,
        "caption_negative_families",
        "applies only with --caption-negatives K (K > 0): add it, or leave the families out.",
    )


def _check_hub(args: PretrainingArguments) -> None:
    """`--push-to-hub` must be able to upload after training; `--hub-model-id` goes with it."""
    repository = args.hub_model_id or Path(args.output_dir).resolve().name
    require(
        not args.push_to_hub or bool(REPO_ID.match(repository)),
        "hub_model_id",
        f"{repository!r} is not a Hub repository name (user/name): --push-to-hub would fail after training.",
    )
    problem = upload_problem() if args.push_to_hub else None
    require(problem is None, "push_to_hub", f"would fail after training: {problem}.")
    require(
        args.push_to_hub or args.hub_model_id is None,
        "hub_model_id",
        "is only used with --push-to-hub: add --push-to-hub, or leave --hub-model-id out.",
    )


def check_paths(args: PretrainingArguments) -> None:
    """What the arguments name: model and tokenizer locations, files and folders that must exist, the training
    files, and the output folder (created here when missing)."""
    for name in ("init", "tokenizer"):
        check_model_location(getattr(args, name), flag(name))
    for name in ("eval_file", "hf_dataset"):
        check_existing_path(getattr(args, name), flag(name))
    check_existing_path(args.image_root, flag("image_root"), folder=True)
    check_train_files(args)
    prepare_output_folder(args.output_dir, flag("output_dir"))


def check_train_files(args: PretrainingArguments) -> None:
    """Every `--train-file` path or pattern must match a file, and the files must be one kind of data: caption
    files, or WebDataset/Parquet shards (streamed, so the run needs `--max-steps`); `--image-column` and
    `--text-column` only where they apply."""
    if not args.train_file:
        return
    try:
        shards = shard_format(expand_data_files(args.train_file))
    except (FileNotFoundError, ValueError) as error:
        raise InvalidArgumentError(f"--train-file {error}") from None
    if shards and args.max_steps is None:
        raise InvalidArgumentError(
            f"--max-steps is needed: --train-file names {SHARD_NAMES[shards]} shards, which are streamed, and a "
            "streamed run counts steps, not epochs."
        )
    defaults = {spec.name: spec.default for spec in dataclasses.fields(PretrainingArguments)}
    renamed = [flag(name) for name in ("image_column", "text_column") if getattr(args, name) != defaults[name]]
    if renamed and shards != "parquet":
        data = (
            "WebDataset shards name images and captions by their file suffixes"
            if shards
            else "caption files name them with the fields 'image' and 'caption'"
        )
        raise InvalidArgumentError(
            f"{renamed[0]} applies to --hf-dataset and Parquet shards only; {data}, so it would be ignored."
        )


__all__ = ["PRESET_PATCH_SIZE", "check_paths", "check_train_files", "check_values", "validate_arguments"]
