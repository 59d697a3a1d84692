"""Zero-shot fine-grained alignment: does the model prefer an image's caption to hard negatives that differ only in
which attribute belongs to which object? (Benchmark data: `mamo_hf.data.finegrained`.)

For each image the true caption and its negatives (one per type of the examples' template) are scored by ITC
(cosine similarity of the projected [CLS] features) and by ITM (match probability of the fused pair). Metrics, in %:

- `itm_accuracy` / `itc_accuracy`: N-way accuracy, the true caption scores strictly highest among itself and all
  its negatives (chance 1 / (1 + number of types): `mamo_hf.data.finegrained.chance_accuracy`);
- `itm_<type>` / `itc_<type>`: pairwise accuracy against the negative of one type (chance 50 %).
"""

from collections.abc import Sequence

import torch

from ..data.finegrained import NEGATIVE_TYPES, FinegrainedExample
from .retrieval import encode_corpus, itm_scores


@torch.no_grad()
def candidate_scores(model, processor, examples: Sequence[FinegrainedExample], batch_size: int = 64) -> dict:
    """ITC and ITM scores `[num_examples, 1 + num_types]` of each image against its caption (column 0) and its
    negatives (columns in the order of `negative_types(examples)`). `model` is a pre-training or retrieval model (it
    needs the ITM head)."""
    if getattr(model, "itm_head", None) is None:
        raise ValueError(
            f"{type(model).__name__} has no ITM head: evaluate a MamoForPreTraining or MamoForImageTextRetrieval."
        )
    types = negative_types(examples)
    texts = [text for example in examples for text in (example.caption, *(example.negatives[name] for name in types))]
    corpus = encode_corpus(model, processor, [example.image for example in examples], texts, batch_size=batch_size)
    per_image = 1 + len(types)
    image_indices = torch.arange(len(examples)).repeat_interleave(per_image)
    text_indices = torch.arange(len(texts))
    itc = (corpus.image_embeds[image_indices] * corpus.text_embeds[text_indices]).sum(dim=-1)
    itm = itm_scores(model, corpus, image_indices, text_indices, batch_size=batch_size * 2)
    return {"itc": itc.view(-1, per_image).cpu(), "itm": itm.float().view(-1, per_image).cpu()}


def negative_types(examples: Sequence[FinegrainedExample]) -> tuple[str, ...]:
    """The negative types of the examples, which must share them (one template)."""
    types = tuple(examples[0].negatives)
    if any(tuple(example.negatives) != types for example in examples):
        raise ValueError("The examples must share their negative types: score one template at a time.")
    return types


def finegrained_metrics(scores: dict[str, torch.Tensor], types: Sequence[str] = NEGATIVE_TYPES) -> dict[str, float]:
    """N-way and per-type pairwise accuracies (%) from `candidate_scores` (negative columns in the order of
    `types`); ties count as wrong."""
    metrics = {}
    for kind, table in scores.items():
        true_score = table[:, :1]
        wins = true_score > table[:, 1:]
        metrics[f"{kind}_accuracy"] = 100.0 * wins.all(dim=1).float().mean().item()
        for column, name in enumerate(types):
            metrics[f"{kind}_{name}"] = 100.0 * wins[:, column].float().mean().item()
    return metrics


def evaluate_finegrained(model, processor, examples: Sequence[FinegrainedExample], batch_size: int = 64) -> dict:
    """`finegrained_metrics` of a model on benchmark examples (the model is left in eval mode)."""
    model.eval()
    return finegrained_metrics(candidate_scores(model, processor, examples, batch_size), negative_types(examples))


__all__ = ["candidate_scores", "evaluate_finegrained", "finegrained_metrics", "negative_types"]
