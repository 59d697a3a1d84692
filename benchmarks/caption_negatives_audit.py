"""Are the caption negatives good on realistic captions? Draw a random sample of them to grade by hand, and sum up the
grades.

`draw` makes every caption of the audit set (tests/data/realistic_captions.jsonl, hand-written COCO-style captions)
give its negatives as a pre-training item would (`CaptionNegatives(k)` with the caption's line number as its key),
pools all (caption, negative) pairs and draws `--size` of them at random with `--seed`, in a JSON Lines file with
empty grades. A grader fills in, for each line, `grammatical`, `plausible` and `false` (true: the negative is false
of the image the caption describes; false: it is a true paraphrase) and a short `reason`. `summarise` counts them:
the precision is the share of negatives that are grammatical and false.

    python benchmarks/caption_negatives_audit.py draw --output benchmarks/results/caption_negatives_graded.jsonl
    python benchmarks/caption_negatives_audit.py summarise benchmarks/results/caption_negatives_graded.jsonl

`--captions FILE` draws from other captions (JSON Lines with `caption` and `category`, e.g. captions the rules were
never tuned on), and `--generator FILE` from another implementation of `CaptionNegatives` (a Python file that
defines it, e.g. an earlier version of mamo_hf/data/negatives.py from git), with its own default families.
"""

import argparse
import importlib.util
import json
import random
from pathlib import Path

from mamo_hf.data.negatives import CaptionNegatives

AUDIT_SET = Path(__file__).resolve().parent.parent / "tests" / "data" / "realistic_captions.jsonl"
GRADES = ("grammatical", "plausible", "false")


def generator_class(path: Path | None):
    """`CaptionNegatives` of the package, or of the Python file at `path`."""
    if path is None:
        return CaptionNegatives
    spec = importlib.util.spec_from_file_location("other_caption_negatives", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CaptionNegatives


def draw(args: argparse.Namespace) -> None:
    """Write `--size` (caption, negative) pairs drawn at random from every negative of the captions."""
    rows = [json.loads(line) for line in args.captions.read_text().splitlines() if line.strip()]
    generator = generator_class(args.generator)(args.k)
    pool = [
        (number, row, negative) for number, row in enumerate(rows) for negative in generator(row["caption"], number)
    ]
    sample = random.Random(args.seed).sample(pool, args.size)
    with args.output.open("w") as file:
        for item, (number, row, negative) in enumerate(sample):
            line = {"item": item, "line": number, "category": row["category"], "caption": row["caption"]}
            line |= {"negative": negative, **dict.fromkeys(GRADES), "reason": ""}
            file.write(json.dumps(line) + "\n")
    print(f"{len(sample)} of {len(pool)} negatives of {len(rows)} captions written to {args.output}")


def summarise(args: argparse.Namespace) -> dict:
    """Counts of each grade, and the precision (grammatical and false), of a graded sample."""
    lines = [json.loads(line) for line in args.graded.read_text().splitlines() if line.strip()]
    ungraded = [line["item"] for line in lines if any(line[grade] is None for grade in GRADES)]
    if ungraded:
        raise SystemExit(f"{args.graded}: items {ungraded} are not graded yet.")
    counts = {grade: sum(line[grade] for line in lines) for grade in GRADES}
    good = sum(line["grammatical"] and line["false"] for line in lines)
    summary = {
        "graded": len(lines),
        **counts,
        "true_or_possibly_true": len(lines) - counts["false"],
        "grammatical_and_false": good,
        "precision": good / len(lines),
        "grammatical_plausible_and_false": sum(all(line[grade] for grade in GRADES) for line in lines),
    }
    print(json.dumps(summary, indent=2))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    drawing = commands.add_parser("draw", help="draw a sample to grade")
    drawing.add_argument("--seed", type=int, default=1)
    drawing.add_argument("--size", type=int, default=100)
    drawing.add_argument("--k", type=int, default=3)
    drawing.add_argument("--generator", type=Path, default=None, help="a file defining CaptionNegatives")
    drawing.add_argument("--captions", type=Path, default=AUDIT_SET, help="JSON Lines with 'caption' and 'category'")
    drawing.add_argument("--output", type=Path, required=True)
    summing = commands.add_parser("summarise", help="count the grades of a graded sample")
    summing.add_argument("graded", type=Path)
    args = parser.parse_args()
    draw(args) if args.command == "draw" else summarise(args)


if __name__ == "__main__":
    main()
