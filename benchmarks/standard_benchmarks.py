"""Score a saved MAMO model on standard benchmarks from local files, and convert standard caption files.

    python benchmarks/standard_benchmarks.py winoground --root winoground/data --model FOLDER
    python benchmarks/standard_benchmarks.py aro --root aro --model FOLDER
    python benchmarks/standard_benchmarks.py sugarcrepe --data-root sugar-crepe/data --image-root coco/val2017 \\
        --model FOLDER
    python benchmarks/standard_benchmarks.py coco --karpathy dataset_coco.json --image-root coco --model FOLDER
    python benchmarks/standard_benchmarks.py flickr --karpathy dataset_flickr30k.json \\
        --image-root flickr30k/flickr30k-images --model FOLDER
    python benchmarks/standard_benchmarks.py convert-coco --annotations captions_train2014.json \\
        --image-folder train2014 --output coco_captions_train2014.json
    python benchmarks/standard_benchmarks.py convert-karpathy --karpathy dataset_coco.json --output-dir coco

The scoring commands print the scores as JSON and write them to `--output` (default `<command>_scores.json`):
Winoground's text, image and group scores, ARO's and SugarCrepe's accuracies of preferring the true caption (overall,
per group and macro-averaged), by ITC and by ITM (`mamo_hf.evaluation.standard`); COCO and Flickr30K retrieval
R@1/5/10 on a Karpathy split (`mamo_hf.evaluation.retrieval`). The files each command reads, and where their formats
are defined, are in `mamo_hf.data.standard`.

`convert-coco` writes the pre-training caption records of a COCO captions file; `convert-karpathy` writes
`<name>_train.json` (pre-training records of `train` and `restval`), `<name>_val.json` and `<name>_test.json`
(retrieval evaluation records) of a Karpathy split file `dataset_<name>.json`.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from mamo_hf import MamoForImageTextRetrieval, MamoProcessor
from mamo_hf.data.standard import (
    ARO_FILES,
    SUGARCREPE_FILES,
    aro_examples,
    coco_caption_records,
    karpathy_caption_records,
    karpathy_retrieval_records,
    karpathy_retrieval_split,
    sugarcrepe_examples,
    winoground_examples,
    write_json,
)
from mamo_hf.errors import first_line
from mamo_hf.evaluation.retrieval import evaluate_retrieval
from mamo_hf.evaluation.standard import CHOICE_CHANCE, WINOGROUND_CHANCE, evaluate_choices, evaluate_winoground

# ARO leaves out of VG-Attribution's macro accuracy the attribute pairs with fewer test cases.
ARO_ATTRIBUTION_MIN_COUNT = 25


def load_model(location: str, device: str):
    """The `MamoForImageTextRetrieval` and processor saved in a folder, on `device`."""
    if not (Path(location) / "config.json").is_file():
        raise ValueError(f"--model {location}: not a saved MAMO folder (no config.json).")
    model = MamoForImageTextRetrieval.from_pretrained(location).to(device).eval()
    return model, MamoProcessor.from_pretrained(location)


def limited(items, limit: int | None):
    """The first `limit` items (all without a limit)."""
    return items[:limit] if limit else items


def winoground(args) -> dict:
    examples = limited(winoground_examples(args.root), args.limit)
    model, processor = load_model(args.model, args.device)
    metrics = evaluate_winoground(model, processor, examples, args.batch_size, args.chunk_size)
    return {"chance": WINOGROUND_CHANCE, **metrics}


def read_lines(file: Path | None) -> list[str]:
    """The non-blank lines of a text file, stripped (none without a file)."""
    return [line.strip() for line in file.read_text(encoding="utf-8").splitlines() if line.strip()] if file else []


def aro(args) -> dict:
    subsets = list(ARO_FILES) if args.subset == "both" else [args.subset]
    items = {subset: limited(aro_examples(args.root, subset), args.limit) for subset in subsets}
    excluded = {"relation": read_lines(args.exclude_relations), "attribution": []}
    min_count = {"relation": 1, "attribution": ARO_ATTRIBUTION_MIN_COUNT}
    model, processor = load_model(args.model, args.device)
    report = {"chance": CHOICE_CHANCE}
    for subset, subset_items in items.items():
        report[subset] = evaluate_choices(
            model, processor, subset_items, args.batch_size, args.chunk_size, min_count[subset], excluded[subset]
        )
    return report


def sugarcrepe(args) -> dict:
    items = limited(sugarcrepe_examples(args.data_root, args.image_root, args.files), args.limit)
    model, processor = load_model(args.model, args.device)
    metrics = evaluate_choices(model, processor, items, args.batch_size, args.chunk_size)
    return {"chance": CHOICE_CHANCE, **metrics}


def retrieval(args) -> dict:
    split = karpathy_retrieval_split(args.karpathy, args.image_root, args.split, args.image_folder)
    model, processor = load_model(args.model, args.device)
    metrics = evaluate_retrieval(
        model, processor, split.images, split.texts, split.image_to_texts, split.text_to_image, args.k, args.batch_size
    )
    return {"split": args.split, "images": len(split.images), "texts": len(split.texts), "k": args.k, **metrics}


def convert_coco(args) -> None:
    records = coco_caption_records(args.annotations, args.image_folder)
    print(f"wrote {len(records)} captions to {write_json(records, args.output)}")


def convert_karpathy(args) -> None:
    name = args.karpathy.stem.removeprefix("dataset_")
    training = ("train",) if args.no_restval else ("train", "restval")
    files = {
        f"{name}_train.json": karpathy_caption_records(args.karpathy, training, args.image_folder),
        f"{name}_val.json": karpathy_retrieval_records(args.karpathy, "val", args.image_folder),
        f"{name}_test.json": karpathy_retrieval_records(args.karpathy, "test", args.image_folder),
    }
    for file_name, records in files.items():
        print(f"wrote {len(records)} records to {write_json(records, args.output_dir / file_name)}")


def rounded(value):
    """`value` with every float rounded to 2 decimals, in nested dicts too."""
    if isinstance(value, dict):
        return {key: rounded(item) for key, item in value.items()}
    return round(value, 2) if isinstance(value, float) else value


def run_scoring(args) -> None:
    started = time.perf_counter()
    with torch.inference_mode():
        scores = args.score(args)
    report = {"benchmark": args.command, "model": args.model, "seconds": round(time.perf_counter() - started, 1)}
    text = json.dumps(rounded({**report, **scores}), indent=2)
    print(text)
    output = args.output or Path(f"{args.command}_scores.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text + "\n", encoding="utf-8")


def scoring_parser(commands, name: str, score, description: str) -> argparse.ArgumentParser:
    """A scoring command with the options they share."""
    parser = commands.add_parser(name, help=description)
    parser.set_defaults(run=run_scoring, score=score)
    parser.add_argument("--model", required=True, help="a folder with a saved MAMO model and its processor")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--output", type=Path, default=None, help="the JSON of the scores (default <command>_scores.json)"
    )
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    wino = scoring_parser(commands, "winoground", winoground, "Winoground's text, image and group scores")
    wino.add_argument("--root", type=Path, required=True, help="the folder with examples.jsonl and images/")
    aro_command = scoring_parser(commands, "aro", aro, "ARO's VG-Relation and VG-Attribution accuracies")
    aro_command.add_argument("--root", type=Path, required=True, help="the folder with the two JSON files and images/")
    aro_command.add_argument("--subset", choices=[*ARO_FILES, "both"], default="both")
    aro_command.add_argument(
        "--exclude-relations",
        type=Path,
        default=None,
        help="a text file of relations (one a line) left out of VG-Relation's macro accuracy",
    )
    sugar = scoring_parser(commands, "sugarcrepe", sugarcrepe, "SugarCrepe's accuracies per file")
    sugar.add_argument("--data-root", type=Path, required=True, help="the folder with SugarCrepe's JSON files")
    sugar.add_argument("--image-root", type=Path, required=True, help="the COCO val2017 images")
    sugar.add_argument("--files", nargs="+", choices=SUGARCREPE_FILES, default=None, help="default: all there")
    for command in (wino, aro_command, sugar):
        command.add_argument("--chunk-size", type=int, default=128, help="items encoded at once")
        command.add_argument("--limit", type=int, default=None, help="score only the first items")
    for name, k in (("coco", 256), ("flickr", 128)):
        command = scoring_parser(commands, name, retrieval, f"{name} retrieval R@1/5/10 on a Karpathy split")
        command.add_argument("--karpathy", type=Path, required=True, help=f"the Karpathy split file of {name}")
        command.add_argument("--image-root", type=Path, required=True, help="the folder image paths are under")
        command.add_argument("--image-folder", default="", help="a folder put in front of every image path")
        command.add_argument("--split", choices=["test", "val"], default="test")
        command.add_argument("--k", type=int, default=k, help="candidates re-ranked by ITM per query")

    coco = commands.add_parser("convert-coco", help="pre-training records of a COCO captions file")
    coco.set_defaults(run=convert_coco)
    coco.add_argument("--annotations", type=Path, required=True, help="e.g. captions_train2014.json")
    coco.add_argument("--image-folder", default="", help="the images' folder under the image root, e.g. train2014")
    coco.add_argument("--output", type=Path, required=True)
    karpathy = commands.add_parser("convert-karpathy", help="training and retrieval records of a Karpathy split file")
    karpathy.set_defaults(run=convert_karpathy)
    karpathy.add_argument(
        "--karpathy", type=Path, required=True, help="dataset_coco.json, dataset_flickr30k.json, ..."
    )
    karpathy.add_argument("--output-dir", type=Path, required=True)
    karpathy.add_argument("--image-folder", default="", help="a folder put in front of every image path")
    karpathy.add_argument("--no-restval", action="store_true", help="train on the `train` split only")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (OSError, ValueError) as error:
        raise SystemExit(f"standard_benchmarks.py {args.command}: error: {first_line(error)}") from None


if __name__ == "__main__":
    sys.exit(main())
