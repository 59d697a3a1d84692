"""Zero-shot scores on the standard compositional benchmarks (data: `mamo_hf.data.compositional`), by ITC and by ITM.

Each (image, caption) pair is scored by ITC (cosine similarity of the projected [CLS] features) and, when the model
has an ITM head, by ITM (match probability of the fused pair), with `encode_corpus` and `itm_scores` of
`mamo_hf.evaluation.retrieval`, `chunk_size` items at a time (so that memory does not grow with the benchmark).
Captions are cleaned as training captions (`clean_caption`). Metrics, in %, per kind of score (`itc`, `itm`):

**Winoground**, with `s(c, i)` the score of caption `c` with image `i` of an example (caption `k` describes image
`k`):

- text score: `s(0, 0) > s(1, 0)` and `s(1, 1) > s(0, 1)`, each image prefers its own caption (chance 25 %);
- image score: `s(0, 0) > s(0, 1)` and `s(1, 1) > s(1, 0)`, each caption prefers its own image (chance 25 %);
- group score: both, i.e. the two matching pairs outscore the two others (chance 2! 2! / 4! = 1/6 ≈ 16.7 %).

**Caption choices** (ARO, SugarCrepe): `accuracy`, the share of items whose true caption scores strictly higher
than every other candidate (chance 50 % with one negative); `groups`, that accuracy per group (ARO relation or
attribute pair, SugarCrepe file); `macro_accuracy`, the mean of the group accuracies over the groups of at least
`min_group_size` items that are not in `excluded_groups` (ARO's VG-Attribution keeps the pairs of 25 items or more;
its VG-Relation figure leaves out the relations its authors list as symmetric), None when no group qualifies. Ties
count as wrong.
"""

import itertools
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch

from ..data.compositional import CaptionChoice, WinogroundExample
from ..data.transforms import clean_caption
from .retrieval import base_and_itm_head, encode_corpus, itm_scores

WINOGROUND_CHANCE = {"text": 25.0, "image": 25.0, "group": 100.0 / 6}
CHOICE_CHANCE = 50.0


@dataclass
class ItemScores:
    """Scores of benchmark items: `scores[kind]` is `[items, candidates]` for caption choices and `[items, 2, 2]`
    (example, caption, image) for Winoground; `groups` holds each item's group (Winoground: its `collapsed_tag`),
    `answers` each caption choice's true caption (None for Winoground)."""

    scores: dict[str, torch.Tensor]
    groups: list[str]
    answers: torch.Tensor | None = None


@torch.no_grad()
def pair_scores(
    model,
    processor,
    images: Sequence,
    texts: Sequence[str],
    image_indices: torch.Tensor,
    text_indices: torch.Tensor,
    batch_size: int = 64,
    max_words: int = 30,
) -> dict[str, torch.Tensor]:
    """ITC and ITM scores (`[pairs]`, on the CPU) of the pairs `(images[image_indices[n]], texts[text_indices[n]])`;
    every image and text is encoded once. `"itm"` only for a model with an ITM head."""
    texts = [clean_caption(text, max_words) for text in texts]
    corpus = encode_corpus(model, processor, images, texts, batch_size=batch_size)
    device = corpus.image_embeds.device
    image_indices, text_indices = image_indices.to(device), text_indices.to(device)
    scores = {"itc": (corpus.image_embeds[image_indices] * corpus.text_embeds[text_indices]).sum(dim=-1).cpu()}
    if base_and_itm_head(model)[1] is not None:
        scores["itm"] = itm_scores(model, corpus, image_indices, text_indices, batch_size=batch_size * 2).float().cpu()
    return scores


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _concatenated(pieces: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {kind: torch.cat([piece[kind] for piece in pieces]) for kind in pieces[0]} if pieces else {}


def choice_scores(
    model, processor, items: Iterable[CaptionChoice], batch_size: int = 64, chunk_size: int = 256, max_words: int = 30
) -> ItemScores:
    """The scores `[items, candidates]` of each item's image with each of its captions (the items must have as many
    candidates each)."""
    pieces, groups, answers = [], [], []
    for chunk in _chunks(items, chunk_size):
        count = len(chunk[0].captions)
        if any(len(item.captions) != count for item in chunk) or (pieces and count != pieces[0]["itc"].shape[1]):
            raise ValueError("The caption choices must have as many candidate captions each.")
        texts = [caption for item in chunk for caption in item.captions]
        image_indices = torch.arange(len(chunk)).repeat_interleave(count)
        images = [item.image for item in chunk]
        text_indices = torch.arange(len(texts))
        scores = pair_scores(model, processor, images, texts, image_indices, text_indices, batch_size, max_words)
        pieces.append({kind: table.view(len(chunk), count) for kind, table in scores.items()})
        groups += [item.group for item in chunk]
        answers += [item.answer for item in chunk]
    return ItemScores(_concatenated(pieces), groups, torch.tensor(answers, dtype=torch.long))


def winoground_scores(
    model,
    processor,
    examples: Iterable[WinogroundExample],
    batch_size: int = 64,
    chunk_size: int = 128,
    max_words: int = 30,
) -> ItemScores:
    """The scores `[examples, 2, 2]`, indexed (example, caption, image), of every caption with every image of each
    example; the groups are the examples' `collapsed_tag`."""
    pieces, groups = [], []
    for chunk in _chunks(examples, chunk_size):
        images = [image for example in chunk for image in example.images]
        texts = [caption for example in chunk for caption in example.captions]
        # Example e, caption c, image i: text 2e + c with image 2e + i.
        grid = torch.meshgrid(torch.arange(len(chunk)), torch.arange(2), torch.arange(2), indexing="ij")
        example_index, caption_index, image_index = (axis.flatten() for axis in grid)
        image_indices, text_indices = 2 * example_index + image_index, 2 * example_index + caption_index
        scores = pair_scores(model, processor, images, texts, image_indices, text_indices, batch_size, max_words)
        pieces.append({kind: table.view(len(chunk), 2, 2) for kind, table in scores.items()})
        groups += [example.collapsed_tag for example in chunk]
    return ItemScores(_concatenated(pieces), groups)


def winoground_outcomes(table: torch.Tensor) -> dict[str, torch.Tensor]:
    """Whether each example of a `[examples, 2, 2]` (example, caption, image) score table passes the text, image
    and group tests (see the module docstring)."""
    matched_0, matched_1 = table[:, 0, 0], table[:, 1, 1]
    text = (matched_0 > table[:, 1, 0]) & (matched_1 > table[:, 0, 1])
    image = (matched_0 > table[:, 0, 1]) & (matched_1 > table[:, 1, 0])
    return {"text": text, "image": image, "group": text & image}


def _percent(passed: torch.Tensor) -> float | None:
    """The share (%) of True in a boolean tensor (None for none: no share of nothing, and never a NaN, which is not
    JSON)."""
    return 100.0 * int(passed.sum()) / passed.numel() if passed.numel() else None


def winoground_metrics(item_scores: ItemScores) -> dict:
    """Text, image and group scores (%) per kind of score, over all examples and per `collapsed_tag` (`by_tag`),
    with the examples' `count` and the counts per tag."""
    tags = sorted(set(item_scores.groups))
    metrics = {"count": len(item_scores.groups), "tag_counts": dict(sorted(Counter(item_scores.groups).items()))}
    for kind, table in item_scores.scores.items():
        outcomes = winoground_outcomes(table)
        metrics[kind] = {name: _percent(passed) for name, passed in outcomes.items()}
        metrics[kind]["by_tag"] = {
            tag: {name: _percent(passed[_group_mask(item_scores.groups, tag)]) for name, passed in outcomes.items()}
            for tag in tags
        }
    return metrics


def _group_mask(groups: list[str], group: str) -> torch.Tensor:
    return torch.tensor([name == group for name in groups], dtype=torch.bool)


def choice_outcomes(table: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
    """Whether the true caption of each item of a `[items, candidates]` score table scores strictly higher than
    every other candidate."""
    true_scores = table.gather(1, answers[:, None])
    others = torch.ones_like(table, dtype=torch.bool).scatter(1, answers[:, None], False)
    return ((true_scores > table) | ~others).all(dim=1)


def choice_metrics(item_scores: ItemScores, min_group_size: int = 1, excluded_groups: Iterable[str] = ()) -> dict:
    """Accuracy, macro accuracy and per-group accuracy (%) of caption choices per kind of score (see the module
    docstring), with the items' `count` and the counts per group."""
    counts = dict(sorted(Counter(item_scores.groups).items()))
    excluded = set(excluded_groups)
    kept = [group for group, count in counts.items() if count >= min_group_size and group not in excluded]
    metrics = {"count": len(item_scores.groups), "group_counts": counts, "macro_groups": len(kept)}
    for kind, table in item_scores.scores.items():
        correct = choice_outcomes(table, item_scores.answers)
        groups = {group: _percent(correct[_group_mask(item_scores.groups, group)]) for group in counts}
        macro = sum(groups[group] for group in kept) / len(kept) if kept else None
        metrics[kind] = {"accuracy": _percent(correct), "macro_accuracy": macro, "groups": groups}
    return metrics


def evaluate_winoground(
    model, processor, examples: Iterable[WinogroundExample], batch_size: int = 64, chunk_size: int = 128
) -> dict:
    """`winoground_metrics` of a model on Winoground examples (the model is left in eval mode)."""
    model.eval()
    return winoground_metrics(winoground_scores(model, processor, examples, batch_size, chunk_size))


def evaluate_choices(
    model,
    processor,
    items: Iterable[CaptionChoice],
    batch_size: int = 64,
    chunk_size: int = 256,
    min_group_size: int = 1,
    excluded_groups: Iterable[str] = (),
) -> dict:
    """`choice_metrics` of a model on caption choices (ARO, SugarCrepe; the model is left in eval mode)."""
    model.eval()
    scores = choice_scores(model, processor, items, batch_size, chunk_size)
    return choice_metrics(scores, min_group_size, excluded_groups)


__all__ = [
    "CHOICE_CHANCE",
    "WINOGROUND_CHANCE",
    "ItemScores",
    "choice_metrics",
    "choice_outcomes",
    "choice_scores",
    "evaluate_choices",
    "evaluate_winoground",
    "pair_scores",
    "winoground_metrics",
    "winoground_outcomes",
    "winoground_scores",
]
