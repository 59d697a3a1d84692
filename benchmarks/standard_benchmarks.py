"""Convert standard caption files into this package's files (scoring a model on the benchmarks is `mamo-hf eval`).

    python benchmarks/standard_benchmarks.py convert-coco --annotations captions_train2014.json \\
        --image-folder train2014 --output coco_captions_train2014.json
    python benchmarks/standard_benchmarks.py convert-karpathy --karpathy dataset_coco.json --output-dir coco

`convert-coco` writes the pre-training caption records of a COCO captions file; `convert-karpathy` writes
`<name>_train.json` (pre-training records of `train` and `restval`), `<name>_val.json` and `<name>_test.json`
(retrieval evaluation records) of a Karpathy split file `dataset_<name>.json`. The formats of the files each command
reads, and where they are defined, are in `mamo_hf.data.standard`.

Retrieval on a Karpathy split, the fine-grained benchmark, Winoground, ARO and SugarCrepe are scored by
`mamo-hf eval MODEL --benchmark ...` (`mamo_hf.cli.evaluate`, `mamo_hf.evaluation.suite`), which reads the same files.
"""

import argparse
import sys
from pathlib import Path

from mamo_hf.data.standard import (
    coco_caption_records,
    karpathy_caption_records,
    karpathy_retrieval_records,
    write_json,
)
from mamo_hf.errors import first_line


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
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
