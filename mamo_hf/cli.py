"""The `mamo-hf` command line: `demo`, `init-base`.

Run `mamo-hf <command> --help` for the options of each command.
"""

import argparse
import sys

import torch


def _image_processor(image_size: int, source: str | None = None):
    """An image processor resizing to `image_size`, with the normalisation of `source`'s processor when it has one."""
    from transformers import AutoImageProcessor
    from transformers.utils import is_torchvision_available

    from .image_processing_mamo import MamoImageProcessor, MamoImageProcessorPil

    statistics = {}
    if source is not None:
        try:
            reference = AutoImageProcessor.from_pretrained(source)
            statistics = {"image_mean": list(reference.image_mean), "image_std": list(reference.image_std)}
        except (OSError, ValueError, AttributeError):
            print(f"No image processor in {source}: using MAMO's default normalisation (mean 0.5, std 0.5).")
    processor_class = MamoImageProcessor if is_torchvision_available() else MamoImageProcessorPil
    return processor_class(size={"height": image_size, "width": image_size}, **statistics)


def init_base(args: argparse.Namespace) -> None:
    """Write a MAMO folder initialised from a ViT and a BERT checkpoint (the paper's starting point)."""
    from transformers import AutoTokenizer

    from .modeling_mamo import MamoModel
    from .processing_mamo import MamoProcessor

    model, info = MamoModel.from_vision_text_pretrained(
        args.vision,
        args.text,
        num_text_layers=args.num_text_layers,
        image_size=args.image_size,
        output_loading_info=True,
    )
    image_size = model.config.vision_config.image_size
    processor = MamoProcessor(
        image_processor=_image_processor(image_size, args.vision), tokenizer=AutoTokenizer.from_pretrained(args.text)
    )
    model.save_pretrained(args.output)
    processor.save_pretrained(args.output)
    parameters = sum(parameter.numel() for parameter in model.parameters())
    print(f"Wrote {args.output}: MAMO with {parameters / 1e6:.1f}M parameters at {image_size} px.")
    print(f"  from {args.vision} (image encoder) and {args.text} (text and fusion encoders)")
    print(f"  new weights, to be learned in pre-training: {', '.join(info['new_keys'])}")
    print(f"Load it with: AutoModel.from_pretrained({args.output!r}), AutoProcessor.from_pretrained({args.output!r})")


def demo(args: argparse.Namespace) -> None:
    """Encode built-in images and captions with a tiny MAMO and print its ITC and ITM scores."""
    from .configuration_mamo import MamoConfig, special_token_ids
    from .data.demo import demo_pairs, demo_tokenizer
    from .modeling_mamo import MamoForImageTextRetrieval
    from .processing_mamo import MamoProcessor

    tokenizer = demo_tokenizer()
    config = MamoConfig.tiny(
        vocab_size=len(tokenizer), special_token_ids=special_token_ids(tokenizer), image_size=64, patch_size=16
    )
    torch.manual_seed(args.seed)
    model = MamoForImageTextRetrieval(config).eval()
    processor = MamoProcessor(image_processor=_image_processor(64), tokenizer=tokenizer)
    pairs = demo_pairs(args.num_pairs, seed=args.seed)
    images, captions = [pair[0] for pair in pairs], [pair[1] for pair in pairs]
    count = len(pairs)

    with torch.no_grad():
        inputs = processor(images=images, text=captions, padding=True, return_tensors="pt")
        outputs = model(**inputs)
        similarity = outputs.image_embeds @ outputs.text_embeds.t()
        every_pair = processor(
            images=[image for image in images for _ in range(count)],
            text=captions * count,
            padding=True,
            return_tensors="pt",
        )
        itm_scores = model(**every_pair).itm_scores.view(count, count)

    parameters = sum(parameter.numel() for parameter in model.parameters())
    print(
        f"A tiny MAMO ({parameters / 1e6:.2f}M parameters) with random weights scores {count} built-in image-caption "
        "pairs. The weights are untrained, so the numbers show the API at work, not learning.\n"
    )
    for index, caption in enumerate(captions):
        print(f"  caption {index}: {caption}")
    _print_matrix("ITC cosine similarity (rows: images, columns: captions)", similarity)
    _print_matrix("ITM match probability (rows: images, columns: captions)", itm_scores)


def _print_matrix(title: str, matrix: torch.Tensor) -> None:
    print(f"\n{title}")
    print(" " * 9 + "".join(f"{f'cap {column}':>9}" for column in range(matrix.shape[1])))
    for row, values in enumerate(matrix.tolist()):
        print(f"{f'img {row}':>9}" + "".join(f"{value:>+9.3f}" for value in values))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mamo-hf", description="MAMO vision-language models for transformers.")
    commands = parser.add_subparsers(dest="command", required=True)

    demo_parser = commands.add_parser("demo", help="score built-in image-caption pairs with a tiny MAMO")
    demo_parser.add_argument("--num-pairs", type=int, default=4, help="number of built-in pairs (default 4)")
    demo_parser.add_argument("--seed", type=int, default=0, help="seed of the model and the pairs (default 0)")
    demo_parser.set_defaults(run=demo)

    init_parser = commands.add_parser(
        "init-base", help="initialise MAMO from a ViT and a BERT checkpoint and save model, processor and tokenizer"
    )
    init_parser.add_argument("--vision", required=True, help="ViT checkpoint (e.g. google/vit-base-patch16-224-in21k)")
    init_parser.add_argument("--text", required=True, help="BERT checkpoint (e.g. bert-base-uncased)")
    init_parser.add_argument("--output", required=True, help="folder to write")
    init_parser.add_argument("--image-size", type=int, default=256, help="pre-training resolution (default 256)")
    init_parser.add_argument(
        "--num-text-layers", type=int, default=None, help="BERT layers for the text encoder (default: half)"
    )
    init_parser.set_defaults(run=init_base)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
