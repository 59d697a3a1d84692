"""Every measured number of README.md and MODEL_CARD.md, written from the committed results file that holds it.

    python benchmarks/readme_numbers.py            # rewrite the generated passages of README.md and MODEL_CARD.md
    python benchmarks/readme_numbers.py --check    # exit 1, naming them, if a passage differs from its results

A generated passage sits between `<!-- numbers: NAME -->` and `<!-- /numbers -->`; `PASSAGES` maps each NAME to the
function that writes it from its results file, naming the file and the command that produced it. A measured number
outside such a passage is refused by `tests/test_readme.py`, so that no number can go stale again.
"""

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
RESULTS = REPOSITORY / "benchmarks" / "results"
DOCUMENTS = ("README.md", "MODEL_CARD.md")
PASSAGE = re.compile(r"(<!-- numbers: ([\w-]+) -->\n)(.*?)(<!-- /numbers -->)", re.DOTALL)


def rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (RESULTS / name).read_text().splitlines() if line.strip()]


def mean_std(values: list[float], digits: int = 1) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {spread:.{digits}f}"


def demo_retrieval() -> str:
    """The first screen's table: zero-shot R@1 of `mamo-hf demo` over its seeds."""
    runs = [row for row in rows("demo_recipe.jsonl") if row["variant"] == "mp50_full"]
    seconds = statistics.median(row["train_seconds"] for row in runs)
    keys = ("itc_tr_r1", "itc_ir_r1", "itm_tr_r1", "itm_ir_r1")
    recall = {key: [row[f"retrieval_{key}"] for row in runs] for key in keys}
    seeds = ", ".join(str(row["seed"]) for row in runs)
    return (
        f"Over {len(runs)} training seeds ({seeds}) of exactly this recipe, the zero-shot R@1 after training, on 200 "
        "held-out pairs (chance 0.5 %), mean ± std:\n\n"
        "| ranking | text retrieval R@1 | image retrieval R@1 |\n|---|---|---|\n"
        f"| ITC | {mean_std(recall['itc_tr_r1'])} % | {mean_std(recall['itc_ir_r1'])} % |\n"
        f"| ITM re-ranking of the top 16 | {mean_std(recall['itm_tr_r1'])} % | {mean_std(recall['itm_ir_r1'])} % |\n\n"
        f"Training took {seconds / 60:.0f} minutes (median; one thread each, run beside other jobs on this project's "
        "2-core machine). From `benchmarks/results/demo_recipe.jsonl`, made by `python benchmarks/ablation.py run "
        f"--variants mp50_full --seeds {' '.join(str(row['seed']) for row in runs)} --results "
        "benchmarks/results/demo_recipe.jsonl` (`mamo_hf.training.pretrain` with the demo's settings).\n"
    )


def zero_shot() -> str:
    """How well zero-shot classification works at demo scale (`benchmarks/zero_shot_demo.py`)."""
    accuracy = json.loads((RESULTS / "zero_shot_demo.json").read_text())["accuracy"]
    colour, shape = accuracy["colour | 'a {}' | ITC"], accuracy["shape | 'a {}' | ITC"]
    reranked = accuracy["colour | 'a {}' | ITM top 3"]
    return (
        "How well it works at demo scale: the tiny model that `tests/test_learning.py` trains (500 steps on "
        'single-object scenes at 32 px) names the colour of 120 new scenes from the prompts "a red", "a blue", ... '
        f'with {100 * colour:.1f} % accuracy by ITC (chance 16.7 %); the shape, from "a circle", ..., only at '
        f"{100 * shape:.1f} % (chance 25 %). Re-ranking the top 3 by ITM lowers the colour accuracy to "
        f"{100 * reranked:.1f} %: that ITM head learned to judge whole captions, not one-word prompts. All prompts "
        "and both rankings: `python benchmarks/zero_shot_demo.py` (`benchmarks/results/zero_shot_demo.json`).\n"
    )


PASSAGES = {"demo-retrieval": demo_retrieval, "zero-shot": zero_shot}


def rewritten(text: str) -> str:
    """`text` with every generated passage written anew from its results."""

    def passage(match: re.Match) -> str:
        name = match.group(2)
        if name not in PASSAGES:
            raise SystemExit(f"readme_numbers.py: no passage named {name!r}; known: {', '.join(PASSAGES)}.")
        return match.group(1) + PASSAGES[name]() + match.group(4)

    return PASSAGE.sub(passage, text)


def stale_passages(path: Path) -> list[str]:
    """The names of the passages of `path` that differ from what their results give."""
    text = path.read_text()
    fresh = {match.group(2): match.group(3) for match in PASSAGE.finditer(rewritten(text))}
    return [match.group(2) for match in PASSAGE.finditer(text) if fresh[match.group(2)] != match.group(3)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only say which passages are stale (exit 1 if any)")
    args = parser.parse_args(argv)
    stale = {name: stale_passages(REPOSITORY / name) for name in DOCUMENTS}
    if args.check:
        problems = [f"{document}: {name}" for document, names in stale.items() for name in names]
        for problem in problems:
            print(f"stale: {problem}", file=sys.stderr)
        return 1 if problems else 0
    for document in DOCUMENTS:
        path = REPOSITORY / document
        path.write_text(rewritten(path.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
