"""Zero-shot image classification: each image against a set of label prompts, by ITC as CLIP does, and optionally
with the best labels re-ranked by ITM, as MAMO's retrieval protocol re-ranks its candidates (docs/method.md §5
"Downstream tasks").

The "zero-shot-image-classification" pipeline of transformers gives the ITC ranking (the model of
`AutoModelForZeroShotImageClassification` scores `N` images against `M` prompts); `zero_shot_classify` adds the ITM
re-ranking, which needs a model with an ITM head (`MamoForImageTextRetrieval`, `MamoForPreTraining`).
"""

from collections.abc import Sequence

import torch

from ..losses_mamo import scaled_similarity
from .retrieval import base_and_itm_head, encode_corpus, itm_scores


@torch.no_grad()
def zero_shot_classify(
    model,
    processor,
    images: Sequence,
    candidate_labels: Sequence[str],
    hypothesis_template: str = "{}",
    rerank_top_k: int = 0,
    batch_size: int = 64,
) -> list[list[dict]]:
    """Rank `candidate_labels` for each image.

    Args:
        model: a `MamoModel`, or a model with one as `.mamo`; re-ranking needs an ITM head (`MamoForImageTextRetrieval`
            or `MamoForPreTraining`).
        processor: a `MamoProcessor`.
        images: PIL images, arrays or paths.
        candidate_labels: the labels; each becomes the prompt `hypothesis_template.format(label)`.
        hypothesis_template: the prompt around a label, e.g. `"a photo of a {}."`.
        rerank_top_k: re-rank each image's `k` best labels by ITM match probability (0: ITC only).
        batch_size: images or prompts per forward.

    Returns:
        For each image, one dict per label, best first: `label`, `score` (ITC softmax over the labels, as the
        pipeline reports it) and, for the re-ranked labels, `itm_score` (the ITM match probability, by which they
        are ordered; they come before the others).
    """
    base, itm_head = base_and_itm_head(model)
    if rerank_top_k and itm_head is None:
        raise ValueError(
            f"Re-ranking by ITM needs a model with an ITM head (MamoForImageTextRetrieval or MamoForPreTraining); "
            f"got {type(model).__name__}."
        )
    prompts = [hypothesis_template.format(label) for label in candidate_labels]
    corpus = encode_corpus(model, processor, images, prompts, batch_size=batch_size)
    probabilities = scaled_similarity(corpus.image_embeds, corpus.text_embeds, base.itc_temperature).softmax(dim=-1)
    order = probabilities.argsort(dim=-1, descending=True)
    itm = torch.full_like(probabilities, float("nan"))
    top_k = min(rerank_top_k, len(prompts))
    if top_k:
        best = order[:, :top_k]
        image_indices = torch.arange(len(images), device=best.device).repeat_interleave(top_k)
        itm_of_best = itm_scores(model, corpus, image_indices, best.flatten(), batch_size).view(-1, top_k).float()
        itm.scatter_(1, best, itm_of_best.to(itm.device))
        order[:, :top_k] = best.gather(1, itm_of_best.argsort(dim=-1, descending=True).to(best.device))
    return [
        [_label_score(candidate_labels[label], probabilities[row, label], itm[row, label]) for label in ranking]
        for row, ranking in enumerate(order.tolist())
    ]


def _label_score(label: str, score: torch.Tensor, itm_score: torch.Tensor) -> dict:
    result = {"label": label, "score": score.item()}
    if not itm_score.isnan():
        result["itm_score"] = itm_score.item()
    return result
