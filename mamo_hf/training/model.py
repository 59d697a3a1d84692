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
"""The model and processor a pre-training run starts from: a saved MAMO (`--init`), or a preset initialised from the
run's seed."""

import torch
from accelerate.utils import set_seed
from huggingface_hub.errors import StrictDataclassError

from ..checks import check_saved_mamo, load_tokenizer
from ..configuration_mamo import MamoConfig, special_token_ids
from ..data import demo_tokenizer, processor_for_config, tiny_config_and_processor
from ..errors import InvalidArgumentError, first_line
from ..modeling_mamo import MamoForPreTraining
from ..processing_mamo import MamoProcessor
from .arguments import PretrainingArguments
from .validation import PRESET_PATCH_SIZE


def build_model_and_processor(args: PretrainingArguments):
    """`MamoForPreTraining` and `MamoProcessor` from `--init`, or a freshly initialised preset; an invalid
    configuration (from `--model-config`, the tokenizer or the `--init` folder) raises `InvalidArgumentError`."""
    try:
        return _from_init_or_preset(args)
    except InvalidArgumentError:
        raise
    except (ValueError, StrictDataclassError) as error:  # the latter: a value of the wrong type for a field
        source = f"--init {args.init}" if args.init else "--model-config"
        cause = error.__cause__ if isinstance(error, StrictDataclassError) and error.__cause__ else error
        raise InvalidArgumentError(f"{source}: {first_line(cause).split(' Errors:')[0]}") from None


def _load_init(location: str, model_config: dict):
    """The model and processor of an `--init` folder or Hub name, which must be a saved MAMO with its processor."""
    check_saved_mamo(location, "--init")
    try:
        model = MamoForPreTraining.from_pretrained(location, dtype=torch.float32, **model_config)
        return model, MamoProcessor.from_pretrained(location)
    except OSError as error:  # no weights, or no processor beside them
        raise InvalidArgumentError(f"--init {location}: {first_line(error)}") from None


def _from_init_or_preset(args: PretrainingArguments):
    if args.init is not None:
        model, processor = _load_init(args.init, args.model_config)
    else:
        tokenizer = load_tokenizer(args.tokenizer, "--tokenizer") if args.tokenizer else demo_tokenizer()
        if args.model == "tiny":
            size = args.image_size or 64
            config, processor = tiny_config_and_processor(size, PRESET_PATCH_SIZE, tokenizer, **args.model_config)
        else:  # "base" (`validate_arguments` allows no other preset)
            config = MamoConfig.mamo_base(**args.model_config)
            config.text_config.update({"vocab_size": len(tokenizer), **special_token_ids(tokenizer)})
            processor = processor_for_config(config, tokenizer)
        set_seed(args.seed)
        model = MamoForPreTraining(config)
    if args.image_size is not None:
        processor.image_processor.size = {"height": args.image_size, "width": args.image_size}
    return model, processor


__all__ = ["build_model_and_processor"]
