"""Image-text retrieval with the protocol of ALBEF and MAMO (docs/method.md §5 "Downstream tasks").

Every image and every text is encoded once (in batches); candidates are ranked by ITC similarity, and the top `k` of
each query are re-ranked by the ITM match probability, computed in batches over many queries at once. Text
retrieval (TR: image → texts) and image retrieval (IR: text → image) report R@1/5/10 and their mean, ITC-only and
re-ranked.

Memory stays bounded for COCO-size sets (5k images × 25k texts): no full score matrix is built. Re-ranking only
permutes the top `k`, so the rank of a ground-truth candidate is its ITM rank inside the top `k`, or its ITC rank
outside; similarities are computed `query_chunk_size` queries at a time. The corpus keeps the encoder states that
ITM needs (`[N, tokens, hidden]` per modality) in `state_dtype`, on `storage_device`. Under `torch.distributed`
each rank encodes and scores its share and the results are gathered.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..losses_mamo import gather_without_grad, pad_to_length, world_size_and_rank

RECALL_AT = (1, 5, 10)


@dataclass
class RetrievalCorpus:
    """Encoded images and texts: ITC features (normalised) and the encoder states that ITM fuses."""

    image_embeds: torch.Tensor  # [num_images, projection_dim]
    text_embeds: torch.Tensor  # [num_texts, projection_dim]
    image_states: torch.Tensor  # [num_images, 1 + num_patches, vision_hidden]
    text_states: torch.Tensor  # [num_texts, max_length, text_hidden]
    text_masks: torch.Tensor  # [num_texts, max_length]


def base_and_itm_head(model):
    """The `MamoModel` of a retrieval or pre-training model, and its ITM head (`None` for a bare `MamoModel`)."""
    return getattr(model, "mamo", model), getattr(model, "itm_head", None)


def _shard(count: int) -> slice:
    world_size, rank = world_size_and_rank()
    per_rank = -(-count // world_size)
    return slice(rank * per_rank, min(count, (rank + 1) * per_rank))


def _gather_shards(tensor: torch.Tensor, count: int, pad_dim: int | None = None) -> torch.Tensor:
    """Concatenate the ranks' shards (padded to equal size for the collective) and drop the padding rows."""
    world_size, _ = world_size_and_rank()
    if world_size == 1:
        return tensor
    per_rank = -(-count // world_size)
    padded = pad_to_length(tensor, per_rank, dim=0)
    gathered = gather_without_grad(padded, pad_dim=pad_dim)
    pieces = gathered.split(per_rank)
    return torch.cat([piece[: max(0, min(per_rank, count - index * per_rank))] for index, piece in enumerate(pieces)])


@torch.no_grad()
def encode_corpus(
    model,
    processor,
    images: Sequence,
    texts: Sequence[str],
    batch_size: int = 64,
    max_length: int = 40,
    state_dtype: torch.dtype | None = None,
    storage_device: torch.device | str | None = None,
) -> RetrievalCorpus:
    """Encode every image and text once, in batches (sharded over ranks under `torch.distributed`).

    Args:
        model: a `MamoModel`, or a model with one as `.mamo` (retrieval, pre-training).
        processor: a `MamoProcessor`.
        images: PIL images, arrays or paths; texts: the captions.
        batch_size: images or texts per forward.
        max_length: token limit of the captions.
        state_dtype: dtype the encoder states are kept in (e.g. `torch.float16` for COCO on a GPU); default the
            model's.
        storage_device: where the states are kept (e.g. `"cpu"` when the accelerator is small); default the model's.
    """
    base, _ = base_and_itm_head(model)
    device = next(base.parameters()).device
    state_dtype = state_dtype or next(base.parameters()).dtype
    storage_device = storage_device or device
    base.eval()

    image_embeds, image_states = [], []
    image_shard = _shard(len(images))
    for start in range(image_shard.start, image_shard.stop, batch_size):
        batch = list(images[start : min(start + batch_size, image_shard.stop)])
        pixel_values = processor(images=batch, return_tensors="pt")["pixel_values"].to(device)
        outputs = base.get_image_features(pixel_values.to(next(base.parameters()).dtype))
        image_embeds.append(outputs.pooler_output.float())
        image_states.append(outputs.last_hidden_state.to(storage_device, state_dtype))

    text_shard = _shard(len(texts))
    tokens = (
        processor(
            text=list(texts[text_shard]),
            padding="longest",
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )
        if text_shard.stop > text_shard.start
        else None
    )
    text_embeds, text_states = [], []
    for start in range(0, text_shard.stop - text_shard.start, batch_size):
        input_ids = tokens["input_ids"][start : start + batch_size].to(device)
        attention_mask = tokens["attention_mask"][start : start + batch_size].to(device)
        outputs = base.get_text_features(input_ids, attention_mask=attention_mask)
        text_embeds.append(outputs.pooler_output.float())
        text_states.append(outputs.last_hidden_state.to(storage_device, state_dtype))

    def stacked(pieces, fallback_shape):
        return torch.cat(pieces) if pieces else torch.zeros(fallback_shape, device=device)

    projection_dim = base.config.projection_dim
    text_masks = tokens["attention_mask"].to(storage_device) if tokens is not None else torch.zeros(0, 1)
    return RetrievalCorpus(
        image_embeds=_gather_shards(stacked(image_embeds, (0, projection_dim)), len(images)),
        text_embeds=_gather_shards(stacked(text_embeds, (0, projection_dim)), len(texts)),
        image_states=_gather_shards(torch.cat(image_states), len(images)),
        text_states=_gather_shards(torch.cat(text_states), len(texts), pad_dim=1),
        text_masks=_gather_shards(text_masks, len(texts), pad_dim=1),
    )


@torch.no_grad()
def itm_scores(
    model, corpus: RetrievalCorpus, image_indices: torch.Tensor, text_indices: torch.Tensor, batch_size: int = 128
) -> torch.Tensor:
    """ITM match probability of the pairs `(image_indices[n], text_indices[n])`, fused `batch_size` pairs at a time."""
    base, itm_head = base_and_itm_head(model)
    device, dtype = next(base.parameters()).device, next(base.parameters()).dtype
    scores = []
    for start in range(0, image_indices.numel(), batch_size):
        images = image_indices[start : start + batch_size].to(corpus.image_states.device)
        texts = text_indices[start : start + batch_size].to(corpus.text_states.device)
        mask = corpus.text_masks[texts]
        length = int(mask.sum(dim=1).max())  # drop the padding columns this batch does not need
        fused = base.fuse(
            corpus.text_states[texts, :length].to(device, dtype),
            mask[:, :length].to(device),
            corpus.image_states[images].to(device, dtype),
        ).last_hidden_state
        scores.append(itm_head(fused[:, 0]).float().softmax(dim=-1)[:, 1])
    return torch.cat(scores) if scores else torch.zeros(0, device=device)


def ground_truth_ranks(
    model,
    corpus: RetrievalCorpus,
    query_embeds: torch.Tensor,
    candidate_embeds: torch.Tensor,
    positives: list[list[int]],
    queries_are_images: bool,
    k: int,
    query_chunk_size: int,
    itm_batch_size: int,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Best rank (0 = first) of a ground-truth candidate of each query: by ITC alone, and after the ITM re-ranking
    of the top `k` (`None` without an ITM head). Each rank scores its share of the queries; the ranks are gathered.

    Args:
        model: as for `retrieval_metrics`.
        corpus: from `encode_corpus`; its encoder states feed the ITM re-ranking.
        query_embeds: `[num_queries, projection_dim]`, the queries' ITC features (e.g. `corpus.image_embeds`).
        candidate_embeds: `[num_candidates, projection_dim]`, the candidates' ITC features.
        positives: for each query, the indices of its ground-truth candidates.
        queries_are_images: True for text retrieval (image queries, text candidates), False for image retrieval.
        k: candidates per query re-ranked by ITM.
        query_chunk_size: queries whose similarities are computed at once (memory: chunk × candidates).
        itm_batch_size: pairs per fusion forward.

    Returns:
        `(itc_ranks, itm_ranks)`: `[num_queries]` long tensors (`itm_ranks` is `None` without an ITM head).
    """
    _, itm_head = base_and_itm_head(model)
    shard = _shard(query_embeds.shape[0])
    itc_ranks, itm_ranks = [], []
    k = min(k, candidate_embeds.shape[0])
    for start in range(shard.start, shard.stop, query_chunk_size):
        stop = min(start + query_chunk_size, shard.stop)
        similarity = query_embeds[start:stop] @ candidate_embeds.t()  # [chunk, candidates]
        is_positive = torch.zeros_like(similarity, dtype=torch.bool)
        for row, query in enumerate(range(start, stop)):
            is_positive[row, positives[query]] = True
        # ITC rank of a candidate = number of candidates scored strictly higher (ties resolved in its favour).
        positive_scores = similarity.masked_fill(~is_positive, float("-inf"))
        best = positive_scores.max(dim=1, keepdim=True).values
        itc_ranks.append((similarity > best).sum(dim=1))
        if itm_head is None:
            continue
        top_scores, top_candidates = similarity.topk(k, dim=1)
        queries = torch.arange(start, stop, device=similarity.device)[:, None].expand(-1, k).reshape(-1)
        candidates = top_candidates.reshape(-1)
        images, texts = (queries, candidates) if queries_are_images else (candidates, queries)
        rescored = itm_scores(model, corpus, images, texts, itm_batch_size).view(stop - start, k)
        top_is_positive = is_positive.gather(1, top_candidates)
        best_itm = rescored.masked_fill(~top_is_positive, float("-inf")).max(dim=1, keepdim=True).values
        inside = (rescored > best_itm).sum(dim=1)
        itm_ranks.append(torch.where(top_is_positive.any(dim=1), inside, itc_ranks[-1]))
    count, device = query_embeds.shape[0], query_embeds.device
    itc_ranks = _gather_shards(_concatenate_ranks(itc_ranks, device), count)
    itm_ranks = _gather_shards(_concatenate_ranks(itm_ranks, device), count) if itm_head is not None else None
    return itc_ranks, itm_ranks


def _concatenate_ranks(ranks: list[torch.Tensor], device) -> torch.Tensor:
    return torch.cat(ranks) if ranks else torch.zeros(0, dtype=torch.long, device=device)


def recall_metrics(text_retrieval_ranks: torch.Tensor, image_retrieval_ranks: torch.Tensor) -> dict[str, float]:
    """TR/IR R@1/5/10 (in %) from the best ground-truth rank of each query, and their mean (`r_mean`)."""
    metrics = {}
    for prefix, ranks in (("txt_r", text_retrieval_ranks), ("img_r", image_retrieval_ranks)):
        for recall in RECALL_AT:
            metrics[f"{prefix}{recall}"] = 100.0 * int((ranks < recall).sum()) / max(1, ranks.numel())
    metrics["txt_r_mean"] = sum(metrics[f"txt_r{recall}"] for recall in RECALL_AT) / len(RECALL_AT)
    metrics["img_r_mean"] = sum(metrics[f"img_r{recall}"] for recall in RECALL_AT) / len(RECALL_AT)
    metrics["r_mean"] = (metrics["txt_r_mean"] + metrics["img_r_mean"]) / 2
    return metrics


@torch.no_grad()
def retrieval_metrics(
    model,
    corpus: RetrievalCorpus,
    image_to_texts: Sequence[Sequence[int]],
    text_to_image: Sequence[int],
    k: int = 256,
    query_chunk_size: int = 256,
    itm_batch_size: int = 128,
) -> dict[str, dict[str, float]]:
    """Recall metrics of an encoded corpus: `{"itc": {...}, "itm": {...}}` (`"itm"` only with an ITM head).

    Args:
        model: a model with an ITM head (`MamoForImageTextRetrieval`, `MamoForPreTraining`) or a bare `MamoModel`
            (ITC only).
        corpus: from `encode_corpus`.
        image_to_texts: for each image, the indices of its ground-truth texts.
        text_to_image: for each text, the index of its image.
        k: candidates per query re-ranked by ITM (256 for COCO, 128 for Flickr30K in the paper).
        query_chunk_size: queries whose similarities are computed at once (memory: chunk × candidates).
        itm_batch_size: pairs per fusion forward.
    """
    text_to_images = [[image] for image in text_to_image]
    tr = ground_truth_ranks(
        model,
        corpus,
        corpus.image_embeds,
        corpus.text_embeds,
        image_to_texts,
        True,
        k,
        query_chunk_size,
        itm_batch_size,
    )
    ir = ground_truth_ranks(
        model,
        corpus,
        corpus.text_embeds,
        corpus.image_embeds,
        text_to_images,
        False,
        k,
        query_chunk_size,
        itm_batch_size,
    )
    results = {"itc": recall_metrics(tr[0], ir[0])}
    if tr[1] is not None:
        results["itm"] = recall_metrics(tr[1], ir[1])
    return results


def evaluate_retrieval(
    model,
    processor,
    images: Sequence,
    texts: Sequence[str],
    image_to_texts: Sequence[Sequence[int]],
    text_to_image: Sequence[int],
    k: int = 256,
    batch_size: int = 64,
    **kwargs,
) -> dict[str, dict[str, float]]:
    """Encode a corpus and compute its retrieval metrics (see `encode_corpus` and `retrieval_metrics`)."""
    corpus_kwargs = {
        name: kwargs.pop(name) for name in ("max_length", "state_dtype", "storage_device") if name in kwargs
    }
    corpus = encode_corpus(model, processor, images, texts, batch_size=batch_size, **corpus_kwargs)
    return retrieval_metrics(model, corpus, image_to_texts, text_to_image, k=k, **kwargs)


__all__ = [
    "RetrievalCorpus",
    "encode_corpus",
    "evaluate_retrieval",
    "itm_scores",
    "recall_metrics",
    "retrieval_metrics",
]
