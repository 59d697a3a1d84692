"""The five benchmarks of `mamo-hf eval` as flat scores, and their reports (`scores.json`, `scores.md`).

One function per benchmark scores a model on the items that its reader builds from local files, with the protocol
of its module (`mamo_hf.evaluation.retrieval`, `.finegrained`, `.standard`):

- `score_retrieval`: an ALBEF evaluation file (`mamo_hf.data.retrieval.load_retrieval_split`) or a Karpathy split
  (`mamo_hf.data.standard.karpathy_retrieval_split`);
- `score_finegrained`: the fine-grained benchmark's generated scenes (`mamo_hf.data.finegrained`), no file;
- `score_winoground`, `score_aro`, `score_sugarcrepe`: the readers of `mamo_hf.data.compositional`.

Each returns **flat scores**: `n`, the number of items (retrieval: images); `<kind>_<metric>`, a score in % by ITC
(`itc_`), by ITM (`itm_`, only for a model with an ITM head) or by chance (`chance_`); other plain entries that say
what was scored (`k`, `seed`, `n_texts`, `macro_groups`); and `groups`, when the benchmark reports per group (a
Winoground tag, an ARO relation or attribute pair, a SugarCrepe file, a fine-grained template), each group's flat
scores with its own `n`. A score that cannot be computed (the macro accuracy over no group) is None, never NaN:
`write_scores` writes strict JSON.
"""

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..data.compositional import CaptionChoice, WinogroundExample
from ..data.finegrained import TEMPLATE_NEGATIVES, chance_accuracy, finegrained_examples
from ..data.retrieval import RetrievalSplit
from .finegrained import evaluate_finegrained
from .retrieval import evaluate_retrieval
from .standard import CHOICE_CHANCE, WINOGROUND_CHANCE, evaluate_choices, evaluate_winoground

KINDS = {"itc": "ITC", "itm": "ITM", "chance": "chance"}
# The fine-grained benchmark of every number in BENCHMARKS.md: 600 scenes of seed 12345, outside the demo's seeds.
FINEGRAINED_EXAMPLES = 600
FINEGRAINED_SEED = 12345
# ARO leaves out of VG-Attribution's macro accuracy the attribute pairs with fewer test cases.
ARO_ATTRIBUTION_MIN_COUNT = 25


def _by_kind(metrics: dict, names: Iterable[str]) -> dict:
    """`{"<kind>_<name>": value}` of metrics given per kind (`{"itc": {name: value}, "itm": ...}`)."""
    return {f"{kind}_{name}": metrics[kind][name] for kind in KINDS if kind in metrics for name in names}


def score_retrieval(model, processor, split: RetrievalSplit, k: int = 256, batch_size: int = 64) -> dict:
    """TR/IR R@1/5/10 and their means of a retrieval split, ranked by ITC and re-ranked by ITM in the top `k`."""
    metrics = evaluate_retrieval(
        model, processor, split.images, split.texts, split.image_to_texts, split.text_to_image, k, batch_size
    )
    return {"n": len(split.images), "n_texts": len(split.texts), "k": k, **_by_kind(metrics, metrics["itc"])}


def score_finegrained(
    model,
    processor,
    templates: Sequence[str] = tuple(TEMPLATE_NEGATIVES),
    examples: int = FINEGRAINED_EXAMPLES,
    seed: int = FINEGRAINED_SEED,
    image_size: int | None = None,
    batch_size: int = 64,
) -> dict:
    """N-way and per-negative accuracies on the fine-grained benchmark's scenes (at the model's image size unless
    told), one group per caption template; the model needs its ITM head."""
    image_size = image_size or model.config.vision_config.image_size
    groups = {}
    for template in templates:
        items = finegrained_examples(examples, seed=seed, image_size=image_size, template=template)
        metrics = evaluate_finegrained(model, processor, items, batch_size)
        groups[template] = {"n": examples, **metrics, "chance_accuracy": chance_accuracy(template)}
    return {"n": examples, "seed": seed, "groups": groups}


def score_winoground(
    model, processor, examples: Sequence[WinogroundExample], batch_size: int = 64, chunk_size: int = 128
) -> dict:
    """Winoground's text, image and group scores, overall and per `collapsed_tag`."""
    metrics = evaluate_winoground(model, processor, examples, batch_size, chunk_size)
    kinds = [kind for kind in KINDS if kind in metrics]
    overall = _by_kind({kind: metrics[kind] for kind in kinds} | {"chance": WINOGROUND_CHANCE}, WINOGROUND_CHANCE)
    groups = {
        tag: {"n": count, **_by_kind({kind: metrics[kind]["by_tag"][tag] for kind in kinds}, WINOGROUND_CHANCE)}
        for tag, count in metrics["tag_counts"].items()
    }
    return {"n": metrics["count"], **overall, "groups": groups}


def score_choices(
    model,
    processor,
    items: Sequence[CaptionChoice],
    batch_size: int = 64,
    chunk_size: int = 128,
    min_group_size: int = 1,
    excluded_groups: Iterable[str] = (),
) -> dict:
    """Accuracy of preferring the true caption, overall, macro-averaged over the groups of at least `min_group_size`
    items not in `excluded_groups` (None without such a group), and per group."""
    metrics = evaluate_choices(model, processor, items, batch_size, chunk_size, min_group_size, excluded_groups)
    kinds = [kind for kind in KINDS if kind in metrics]
    chance = {"accuracy": CHOICE_CHANCE, "macro_accuracy": CHOICE_CHANCE}
    groups = {
        group: {"n": count, **{f"{kind}_accuracy": metrics[kind]["groups"][group] for kind in kinds}}
        for group, count in metrics["group_counts"].items()
    }
    overall = _by_kind({kind: metrics[kind] for kind in kinds} | {"chance": chance}, chance)
    return {"n": metrics["count"], "macro_groups": metrics["macro_groups"], **overall, "groups": groups}


def score_aro(
    model,
    processor,
    items: Sequence[CaptionChoice],
    subset: str,
    excluded_relations: Iterable[str] = (),
    batch_size: int = 64,
    chunk_size: int = 128,
) -> dict:
    """`score_choices` of one ARO subset with ARO's macro accuracy: VG-Relation's leaves out `excluded_relations`
    (its authors leave out the symmetric ones), VG-Attribution's the attribute pairs of fewer than 25 cases."""
    if subset == "relation":
        return score_choices(model, processor, items, batch_size, chunk_size, excluded_groups=excluded_relations)
    return score_choices(model, processor, items, batch_size, chunk_size, ARO_ATTRIBUTION_MIN_COUNT)


def score_sugarcrepe(
    model, processor, items: Sequence[CaptionChoice], batch_size: int = 64, chunk_size: int = 128
) -> dict:
    """`score_choices` of SugarCrepe's items, one group per file (`swap_att`, ...)."""
    return score_choices(model, processor, items, batch_size, chunk_size)


def _cell(value) -> str:
    """A table cell: scores with one decimal, None as a dash, names with their `|` escaped."""
    if value is None:
        return "–"
    return f"{value:.1f}" if isinstance(value, float) else str(value).replace("|", "\\|")


def markdown_table(name: str, scores: dict) -> list[str]:
    """The lines of one benchmark's table: a row per kind of score (ITC, ITM, chance) of all items and of each
    group (named, with its `n`, on its first row), a column per metric (an empty cell where a row has no such
    metric); the plain entries other than `n` on a line above it."""
    rows, columns = [], []
    for label, values in [("all", scores), *scores.get("groups", {}).items()]:
        heading = (label, values["n"])
        for kind, title in KINDS.items():
            row = {key.removeprefix(f"{kind}_"): value for key, value in values.items() if key.startswith(f"{kind}_")}
            if row:
                rows.append((*heading, title, row))
                heading = ("", "")
                columns += [metric for metric in row if metric not in columns]
    notes = [f"{key}: {value}" for key, value in scores.items() if key not in ("n", "groups") and not _scored(key)]
    lines = [f"## {name}", ""] + ([", ".join(notes), ""] if notes else [])
    lines += ["| | n | score | " + " | ".join(columns) + " |", "|---" * (3 + len(columns)) + "|"]
    for label, count, title, row in rows:
        cells = [label, count, title, *(row.get(metric, "") for metric in columns)]
        lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return lines + [""]


def _scored(key: str) -> bool:
    """Whether a flat entry is a score (`itc_...`, `itm_...`, `chance_...`)."""
    return key.split("_", 1)[0] in KINDS


def markdown_report(report: dict) -> str:
    """`scores.md`: what was scored, when and by which command, then one table per benchmark."""
    lines = [f"# Scores of {report['model']}", "", f"{report['date']}: `{report['command']}`", ""]
    for name, scores in report["benchmarks"].items():
        lines += markdown_table(name, scores)
    return "\n".join(lines)


def write_scores(report: dict, output_dir: str | Path) -> tuple[Path, Path]:
    """Write `scores.json` (strict JSON: a NaN raises `ValueError`) and `scores.md` into `output_dir`, creating it;
    returns their paths."""
    output_dir = Path(output_dir)
    text = json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    output_dir.mkdir(parents=True, exist_ok=True)
    json_path, markdown_path = output_dir / "scores.json", output_dir / "scores.md"
    json_path.write_text(text, encoding="utf-8")
    markdown_path.write_text(markdown_report(report), encoding="utf-8")
    return json_path, markdown_path


__all__ = [
    "ARO_ATTRIBUTION_MIN_COUNT",
    "FINEGRAINED_EXAMPLES",
    "FINEGRAINED_SEED",
    "markdown_report",
    "markdown_table",
    "score_aro",
    "score_choices",
    "score_finegrained",
    "score_retrieval",
    "score_sugarcrepe",
    "score_winoground",
    "write_scores",
]
