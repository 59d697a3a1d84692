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
"""`mamo-hf init-base` and `mamo-hf push`: a MAMO made from a ViT and a BERT, and a saved MAMO sent to the Hub."""

import argparse
from pathlib import Path

from ..checks import MAX_IMAGE_SIZE
from ..errors import InvalidArgumentError, first_line
from .options import integer_in


def _image_processor(image_size: int, source: str | None = None):
    """An image processor resizing to `image_size`, with the normalisation of `source`'s processor when it has one."""
    from transformers import AutoImageProcessor
    from transformers.utils import is_torchvision_available

    from ..image_processing_mamo import MamoImageProcessor, MamoImageProcessorPil

    statistics = {}
    if source is not None:
        try:
            reference = AutoImageProcessor.from_pretrained(source)
            statistics = {"image_mean": list(reference.image_mean), "image_std": list(reference.image_std)}
        except (OSError, ValueError, AttributeError):
            print(f"No image processor in {source}: using MAMO's default normalisation (mean 0.5, std 0.5).")
    processor_class = MamoImageProcessor if is_torchvision_available() else MamoImageProcessorPil
    return processor_class(size={"height": image_size, "width": image_size}, **statistics)


# What init-base takes for each source: the flag, the model types it accepts, what to call them.
INIT_SOURCES = {"vision": (("vit",), "ViT"), "text": (("bert",), "BERT")}


def _check_init_base(args: argparse.Namespace):
    """init-base's arguments, checked before any weight is read: each source a ViT / BERT checkpoint (its config
    says so), the BERT folder with its tokenizer and deeper than `--num-text-layers`, the output folder new or empty
    (init-base never writes over a model). Returns the text checkpoint's tokenizer; raises `InvalidArgumentError`."""
    from transformers import AutoConfig

    from ..checks import check_model_location, load_tokenizer

    configs = {}
    for flag, (model_types, kind) in INIT_SOURCES.items():
        location = getattr(args, flag)
        check_model_location(location, f"--{flag}")
        if Path(location).is_dir() and not (Path(location) / "config.json").is_file():
            raise InvalidArgumentError(f"--{flag} {location}: no config.json; give the folder save_pretrained wrote.")
        try:
            configs[flag] = AutoConfig.from_pretrained(location)
        except (OSError, ValueError) as error:
            raise InvalidArgumentError(f"--{flag} {location}: {first_line(error)}") from None
        if configs[flag].model_type not in model_types:
            raise InvalidArgumentError(
                f"--{flag} {location}: a {configs[flag].model_type} checkpoint; --{flag} takes a {kind} checkpoint."
            )
    patch_size = configs["vision"].patch_size
    if args.image_size % patch_size:
        raise InvalidArgumentError(
            f"--image-size {args.image_size}: must be a multiple of {args.vision}'s patch size ({patch_size})."
        )
    bert_layers = configs["text"].num_hidden_layers
    if bert_layers < 2:
        raise InvalidArgumentError(
            f"--text {args.text}: a BERT of {bert_layers} layer(s); MAMO needs at least 2, one for the text encoder "
            "and one for the fusion encoder."
        )
    if args.num_text_layers is not None and args.num_text_layers >= bert_layers:
        raise InvalidArgumentError(
            f"--num-text-layers {args.num_text_layers}: {args.text} has {bert_layers} layers, and the fusion encoder "
            f"needs at least one: give 1 to {bert_layers - 1}."
        )
    output = Path(args.output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise InvalidArgumentError(f"--output {output}: exists and is not an empty folder; choose a new folder.")
    return load_tokenizer(args.text, "--text")


def init_base(args: argparse.Namespace) -> None:
    """Write a MAMO folder initialised from a ViT and a BERT checkpoint (the paper's starting point)."""
    from ..hub import write_model_card
    from ..modeling_mamo import MamoModel
    from ..processing_mamo import MamoProcessor

    tokenizer = _check_init_base(args)
    try:
        model, info = MamoModel.from_vision_text_pretrained(
            args.vision,
            args.text,
            num_text_layers=args.num_text_layers,
            image_size=args.image_size,
            output_loading_info=True,
        )
    except (OSError, ValueError) as error:  # e.g. a folder with a config and no weights
        raise InvalidArgumentError(f"--vision {args.vision} / --text {args.text}: {first_line(error)}") from None
    image_size = model.config.vision_config.image_size
    processor = MamoProcessor(image_processor=_image_processor(image_size, args.vision), tokenizer=tokenizer)
    model.save_pretrained(args.output)
    processor.save_pretrained(args.output)
    write_model_card(
        args.output,
        model_name=Path(args.output).name,
        base_model=[args.vision, args.text],
        summary=f"MAMO initialised as in the paper from `{args.vision}` (image encoder) and `{args.text}` (text and "
        "fusion encoders), before any MAMO pre-training; the projections, modality types and mask embedding are new.",
    )
    parameters = sum(parameter.numel() for parameter in model.parameters())
    print(f"Wrote {args.output}: MAMO with {parameters / 1e6:.1f}M parameters at {image_size} px.")
    print(f"  from {args.vision} (image encoder) and {args.text} (text and fusion encoders)")
    print(f"  new weights, to be learned in pre-training: {', '.join(info['new_keys'])}")
    print(f"Load it with: AutoModel.from_pretrained({args.output!r}), AutoProcessor.from_pretrained({args.output!r})")


def push(args: argparse.Namespace) -> None:
    """Upload a saved MAMO folder to the Hub."""
    from ..hub import push_to_hub, upload_failure, upload_problem

    if not (Path(args.folder) / "config.json").is_file():
        raise SystemExit(f"mamo-hf push: error: {args.folder}: not a saved model folder (no config.json).")
    if problem := upload_problem():
        raise SystemExit(f"mamo-hf push: error: {args.repo_id}: {problem}.")
    try:
        push_to_hub(args.folder, args.repo_id, private=args.private, commit_message=args.commit_message)
    except Exception as error:  # the Hub client's: an HTTP refusal, a network that cannot be reached, a bad folder
        reason = upload_failure(error) or (first_line(error) if isinstance(error, ValueError) else None)
        if reason is None:
            raise
        raise SystemExit(f"mamo-hf push: error: {args.repo_id}: {reason}") from None
    print(f"Pushed {args.folder} to the Hub repository {args.repo_id}.")


def add_model_commands(commands: dict) -> None:
    """The flags of `push` and `init-base`."""
    push_parser = commands["push"]
    push_parser.add_argument("folder", help="folder written by save_pretrained / mamo-hf pretrain")
    push_parser.add_argument("repo_id", help="Hub repository, e.g. user/mamo-base")
    push_parser.add_argument("--private", action="store_true", help="create the repository as private")
    push_parser.add_argument("--commit-message", default="Upload MAMO model, processor and model card")
    push_parser.set_defaults(run=push)

    init_parser = commands["init-base"]
    init_parser.add_argument("--vision", required=True, help="ViT checkpoint (e.g. google/vit-base-patch16-224-in21k)")
    init_parser.add_argument("--text", required=True, help="BERT checkpoint (e.g. bert-base-uncased)")
    init_parser.add_argument("--output", required=True, help="folder to write")
    init_parser.add_argument(
        "--image-size", type=integer_in(1, MAX_IMAGE_SIZE), default=256, help="pre-training resolution (default 256)"
    )
    init_parser.add_argument(
        "--num-text-layers",
        type=integer_in(1, 1000),
        default=None,
        help="BERT layers for the text encoder (default: half)",
    )
    init_parser.set_defaults(run=init_base)


__all__ = ["add_model_commands"]
