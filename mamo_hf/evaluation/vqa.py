"""VQA accuracy with the rules of the official evaluation; the answer logic lives with the data
(`mamo_hf.data.vqa_answers`), which the training targets use too."""

from ..data.vqa_answers import (
    VQA_V2_NUM_ANSWERS,
    build_answer_vocabulary,
    normalize_answer,
    soft_score,
    soft_scores,
    vqa_accuracy,
    vqa_accuracy_of_predictions,
)

__all__ = [
    "VQA_V2_NUM_ANSWERS",
    "build_answer_vocabulary",
    "normalize_answer",
    "soft_score",
    "soft_scores",
    "vqa_accuracy",
    "vqa_accuracy_of_predictions",
]
