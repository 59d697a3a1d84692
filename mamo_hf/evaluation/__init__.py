"""Evaluation protocols: image-text retrieval (ITC top-k, ITM re-ranking, R@K)."""

from .retrieval import (
    RetrievalCorpus,
    encode_corpus,
    evaluate_retrieval,
    itm_scores,
    recall_metrics,
    retrieval_metrics,
)

__all__ = [
    "RetrievalCorpus",
    "encode_corpus",
    "evaluate_retrieval",
    "itm_scores",
    "recall_metrics",
    "retrieval_metrics",
]
