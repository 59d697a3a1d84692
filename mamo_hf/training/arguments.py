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
"""`PretrainingArguments`, and what the package knows about each of its fields, declared once beside the field.

Every field is made by `argument(...)`, which records its `ArgumentFacts`: the bounds or choices of its value, whether
it defines what the run computes (a resumed run must keep it, `RUN_DEFINING_ARGUMENTS`) and whether the model card
lists it (`CARD_ARGUMENTS`). The value checks (`mamo_hf.training.validation`), the resume check
(`mamo_hf.training.checkpoints`), the card and the `--config` YAML check of `mamo-hf` read them from here.
"""

import dataclasses
import math
import types
import typing
from dataclasses import MISSING, dataclass

from ..checks import MAX_IMAGE_SIZE
from ..data.demo import TRAINING_TEMPLATES
from ..data.negatives import DEFAULT_FAMILIES as DEFAULT_NEGATIVE_FAMILIES
from ..data.negatives import FAMILIES as NEGATIVE_FAMILIES

TRACKERS = ("tensorboard", "csv")
# The largest built-in demo data set: beyond it a run only waits for its data.
MAX_DEMO_PAIRS = 10_000_000
# Caption negatives per caption: each one is another caption through the text encoder (10,000 took 8.5 GB for a batch
# of 4); published recipes use a handful.
MAX_CAPTION_NEGATIVES = 16


@dataclass(frozen=True)
class ArgumentFacts:
    """What the package knows about one field of `PretrainingArguments`.

    Args:
        defines_run (`bool`): the value defines what a run computes; `--resume` refuses a different one (unless
            `--allow-changed-arguments`). Every field must say, so that a new flag cannot escape the resume check.
        on_card (`bool`): the model card's "Training" section lists the value.
        minimum, maximum (`float`, *optional*): inclusive bounds of a number.
        above (`float`, *optional*): an exclusive lower bound (`--learning-rate` > 0).
        choices (`tuple[str, ...]`, *optional*): the allowed values of a string, or of each item of a list (which
            must then hold at least one item, unless `empty_allowed`).
        empty_allowed (`bool`): a list with `choices` may be empty.
    """

    defines_run: bool
    on_card: bool = False
    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None
    choices: tuple[str, ...] | None = None
    empty_allowed: bool = False


def argument(default=MISSING, *, help: str, defines_run: bool, default_factory=MISSING, **facts) -> dataclasses.Field:
    """A `PretrainingArguments` field with its `help` and its `ArgumentFacts` (`defines_run` and the keyword
    arguments `facts`), kept in the field's metadata."""
    metadata = {"help": help, "facts": ArgumentFacts(defines_run=defines_run, **facts)}
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


@dataclass
class PretrainingArguments:
    """Everything a pre-training run needs; `mamo-hf pretrain` exposes each field as a flag or a YAML key."""

    # Model
    model: str = argument("tiny", help="preset when --init is not given: tiny or base", defines_run=True, on_card=True)
    init: str | None = argument(
        None,
        help="folder of a MAMO checkpoint to start from (e.g. from `mamo-hf init-base`)",
        defines_run=True,
        on_card=True,
    )
    tokenizer: str | None = argument(
        None, help="tokenizer folder for a preset (default: the built-in demo tokenizer, tiny only)", defines_run=True
    )
    model_config: dict = argument(
        help="MamoConfig fields to override, e.g. {'mim_weight': 0.5}", defines_run=True, default_factory=dict
    )
    image_size: int | None = argument(
        None,
        help="training resolution (default: the model's)",
        defines_run=True,
        on_card=True,
        minimum=16,
        maximum=MAX_IMAGE_SIZE,
    )
    # Data
    train_file: list[str] = argument(
        help="caption JSON/JSONL/CSV files, or WebDataset .tar / Parquet shards (streamed, need --max-steps); globs "
        "and brace ranges such as 'shards/{00000..00099}.tar' are expanded (empty: the built-in demo data)",
        defines_run=True,
        default_factory=list,
    )
    image_root: str | None = argument(None, help="folder that relative image paths start from", defines_run=False)
    hf_dataset: str | None = argument(None, help="a local `datasets` folder (load_from_disk)", defines_run=True)
    image_column: str = argument(
        "image",
        help="image column of --hf-dataset or Parquet shards (Parquet without it: jpg, jpeg, png or webp)",
        defines_run=True,
    )
    text_column: str = argument(
        "caption",
        help="text column of --hf-dataset or Parquet shards (Parquet without it: text or txt)",
        defines_run=True,
    )
    shuffle_buffer: int = argument(
        1000,
        help="WebDataset/Parquet shards: shuffle the shard order every epoch and pairs in a buffer of this many "
        "records (0: read in order)",
        defines_run=False,
        minimum=0,
        maximum=10_000_000,
    )
    streaming: bool = argument(False, help="read --train-file line by line (needs --max-steps)", defines_run=False)
    demo_pairs: int = argument(
        20000, help="size of the built-in demo training set", defines_run=True, minimum=1, maximum=MAX_DEMO_PAIRS
    )
    demo_max_objects: int = argument(3, help="objects per demo scene (1 to 3)", defines_run=True, minimum=1, maximum=3)
    demo_minimal_pairs: float = argument(
        0.0,
        help="fraction of the demo data served as minimal pairs: a scene batched with a copy in which two objects "
        "exchange one attribute (hard negatives that differ only in binding); 0 = off",
        defines_run=True,
        minimum=0,
        maximum=1,
    )
    eval_pairs: int = argument(
        200,
        help="held-out demo pairs for zero-shot retrieval (0: none)",
        defines_run=False,
        minimum=0,
        maximum=1_000_000,
    )
    eval_file: str | None = argument(None, help="held-out caption file for zero-shot retrieval", defines_run=False)
    demo_templates: list[str] = argument(
        help="caption templates of the built-in demo data: list and/or relation (one drawn per pair)",
        defines_run=True,
        default_factory=lambda: ["list"],
        choices=TRAINING_TEMPLATES,
    )
    augment: bool = argument(True, help="random resized crop and left/right-aware flip", defines_run=True)
    caption_safe_crops: bool = argument(
        True,
        help="captions that name places or sizes get mild crops (90-100%% of the image) that keep them true",
        defines_run=True,
    )
    caption_negatives: int = argument(
        0,
        help="rule-based hard-negative captions per caption (attributes, counts, objects, actions or relations "
        "exchanged or replaced), added to ITC's softmax and to ITM (0: off)",
        defines_run=True,
        minimum=0,
        maximum=MAX_CAPTION_NEGATIVES,
    )
    caption_negative_families: list[str] = argument(
        help="rule families of --caption-negatives: " + ", ".join(NEGATIVE_FAMILIES) + " (shuffle: the words in "
        "another order, opt-in)",
        defines_run=True,
        default_factory=lambda: list(DEFAULT_NEGATIVE_FAMILIES),
        choices=NEGATIVE_FAMILIES,
    )
    max_length: int = argument(
        40,
        help="token limit of a caption",
        defines_run=True,
        minimum=3,
        maximum=4096,  # [CLS], one word piece, [SEP]
    )
    max_words: int = argument(30, help="word limit of a cleaned caption", defines_run=True, minimum=1, maximum=512)
    strict: bool = argument(False, help="fail on the first bad record instead of skipping it", defines_run=False)
    max_image_pixels: int = argument(
        25_000_000,
        help="larger images are decoded at reduced size (JPEG) or skipped and counted (0: no limit)",
        defines_run=False,
        minimum=0,
        maximum=1_000_000_000,
    )
    allow_absolute_image_paths: bool = argument(
        False,
        help="accept image paths in annotation files that are absolute or lead out of --image-root",
        defines_run=False,
    )
    num_workers: int = argument(2, help="DataLoader workers per process", defines_run=False, minimum=0, maximum=256)
    # Optimisation
    batch_size: int = argument(
        32, help="pairs per process per micro-batch", defines_run=True, on_card=True, minimum=1, maximum=65_536
    )
    gradient_accumulation_steps: int = argument(
        1, help="micro-batches per optimizer step", defines_run=True, on_card=True, minimum=1, maximum=65_536
    )
    epochs: int = argument(
        1, help="passes over the data (ignored with --max-steps)", defines_run=False, minimum=1, maximum=100_000
    )
    max_steps: int | None = argument(
        None, help="optimizer steps (overrides --epochs)", defines_run=False, minimum=1, maximum=1_000_000_000
    )
    learning_rate: float = argument(1e-4, help="peak learning rate", defines_run=True, on_card=True, above=0)
    min_learning_rate: float = argument(1e-5, help="floor of the cosine decay", defines_run=True, minimum=0)
    warmup_steps: int = argument(
        1000, help="linear warm-up steps", defines_run=True, on_card=True, minimum=0, maximum=1_000_000_000
    )
    weight_decay: float = argument(
        0.02, help="AdamW weight decay (not on biases and norms)", defines_run=True, on_card=True, minimum=0
    )
    max_grad_norm: float = argument(5.0, help="gradient clipping (0: off)", defines_run=True, minimum=0)
    max_nonfinite_steps: int = argument(
        5,
        help="a step with a non-finite loss or gradient is skipped (no update of the weights, optimizer, schedule, "
        "teacher or queue); after this many in a row the run stops with an error",
        defines_run=False,
        minimum=1,
        maximum=1_000_000,
    )
    loss_spike_factor: float = argument(
        10.0,
        help="warn when the loss exceeds this multiple of its running median (0: off)",
        defines_run=False,
        minimum=0,
    )
    mixed_precision: str = argument(
        "no", help="no, bf16 or fp16", defines_run=True, on_card=True, choices=("no", "bf16", "fp16")
    )
    allow_slow_bf16: bool = argument(
        False,
        help="run bf16 even on a CPU without native bf16 (AVX512-BF16 or AMX), where it is ~25× slower",
        defines_run=False,
    )
    seed: int = argument(
        42,
        help="seed of the initialisation, the data order and the masks",
        defines_run=True,
        on_card=True,
        minimum=0,
        maximum=2**32 - 1,
    )
    cpu: bool = argument(False, help="run on CPU even where a GPU exists", defines_run=False)
    # Output
    output_dir: str = argument("mamo-pretrain", help="checkpoints, logs and the final model", defines_run=False)
    checkpoint_every: int = argument(
        1000, help="steps between checkpoints (0: none)", defines_run=False, minimum=0, maximum=1_000_000_000
    )
    save_total_limit: int = argument(
        2, help="checkpoints kept (older ones are deleted)", defines_run=False, minimum=0, maximum=1_000_000
    )
    resume: str | None = argument(None, help="'latest' or a checkpoint folder to continue from", defines_run=False)
    allow_changed_arguments: bool = argument(
        False,
        help="with --resume: continue although arguments that define the run (batch size, seed, data, model config, "
        "schedule, ...) differ from the checkpoint's; the new values are used",
        defines_run=False,
    )
    overwrite_output_dir: bool = argument(
        False,
        help="start a fresh run in a folder that holds another run's checkpoints, logs or model",
        defines_run=False,
    )
    log_every: int = argument(10, help="steps between log lines", defines_run=False, minimum=1, maximum=1_000_000_000)
    report_to: list[str] = argument(
        help="trackers: tensorboard, csv",
        defines_run=False,
        default_factory=lambda: list(TRACKERS),
        choices=TRACKERS,
        empty_allowed=True,
    )
    eval_k: int = argument(
        16,
        help="candidates re-ranked by ITM in the retrieval evaluation",
        defines_run=False,
        minimum=1,
        maximum=10_000,
    )
    push_to_hub: bool = argument(False, help="upload the final model, processor and card", defines_run=False)
    hub_model_id: str | None = argument(None, help="repository for --push-to-hub (user/name)", defines_run=False)


def facts(name: str) -> ArgumentFacts:
    """The `ArgumentFacts` of the `PretrainingArguments` field `name`."""
    return PretrainingArguments.__dataclass_fields__[name].metadata["facts"]


def flag(name: str) -> str:
    """The command-line flag of a field: `batch_size` → `--batch-size`."""
    return "--" + name.replace("_", "-")


FIELD_TYPES = typing.get_type_hints(PretrainingArguments)
# What a resumed run must keep (with the number of processes; see `mamo_hf.training.checkpoints`), and what the model
# card lists, in the order of the fields.
RUN_DEFINING_ARGUMENTS = tuple(name for name in FIELD_TYPES if facts(name).defines_run)
CARD_ARGUMENTS = tuple(name for name in FIELD_TYPES if facts(name).on_card)


def fits_type(value, hint) -> bool:
    """Whether `value` has the type `hint` of a field (`int` also fits `float`; `bool` fits only `bool`): what a YAML
    file or the Python API can get wrong, and argparse cannot."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    if value is None:
        return union and type(None) in typing.get_args(hint)
    options = [option for option in typing.get_args(hint) if option is not type(None)] if union else [hint]
    return any(_fits_option(value, option) for option in options)


def _fits_option(value, option) -> bool:
    if typing.get_origin(option) is list:
        return isinstance(value, list) and all(fits_type(item, typing.get_args(option)[0]) for item in value)
    if option is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if option is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, typing.get_origin(option) or option)


def type_name(hint) -> str:
    """A field's type as `--config` errors name it: `int`, `list[str]`, `str | None`."""
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")


def value_problem(name: str, value) -> str | None:
    """What is wrong with `value` for the field `name`, by its type and `ArgumentFacts` (bounds, choices), as the
    end of a sentence that starts with the flag ("must be an integer >= 1, got 0."), or None."""
    hint, known = FIELD_TYPES[name], facts(name)
    if value is None and fits_type(value, hint):
        return None
    if known.choices is not None:
        return _choice_problem(value, known)
    if known.minimum is not None or known.above is not None:
        return _number_problem(value, hint, known)
    return None if fits_type(value, hint) else f"must be {type_name(hint)}, got {value!r}."


def _number_problem(value, hint, known: ArgumentFacts) -> str | None:
    integer = int in typing.get_args(hint) or hint is int
    fits = fits_type(value, int if integer else float) and (integer or math.isfinite(value))
    low_ok = known.minimum is None or (fits and value >= known.minimum)
    high_ok = known.maximum is None or (fits and value <= known.maximum)
    above_ok = known.above is None or (fits and value > known.above)
    if fits and low_ok and high_ok and above_ok:
        return None
    kind = "an integer" if integer else "a finite number"
    if known.above is not None:
        bounds = f"> {_number(known.above)}"
    elif known.maximum is not None:
        bounds = f"from {_number(known.minimum)} to {_number(known.maximum)}"
    else:
        bounds = f">= {_number(known.minimum)}"
    return f"must be {kind} {bounds}, got {value!r}."


def _number(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


def _choice_problem(value, known: ArgumentFacts) -> str | None:
    choices = known.choices
    if isinstance(value, list):
        if all(item in choices for item in value) and (value or known.empty_allowed):
            return None
        return f"must be some of {', '.join(choices)}, got {value}."
    if value in choices:
        return None
    return f"must be {', '.join(choices[:-1])} or {choices[-1]}, got {value!r}."


__all__ = ["CARD_ARGUMENTS", "RUN_DEFINING_ARGUMENTS", "ArgumentFacts", "PretrainingArguments", "argument"]
