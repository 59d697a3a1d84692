"""Evaluation protocols of the paper: image-text retrieval (ITC top-k, ITM re-ranking, R@K), VQA accuracy and
weakly-supervised grounding (Grad-CAM of the ITM score, proposals ranked by heat); zero-shot classification; a dense
linear probe of the image encoder's patch states (mIoU, patch accuracy)."""

from .dense_probe import LinearProbe, dense_probe, fit_linear_probe, patch_features, segmentation_metrics
from .grounding import (
    box_iou,
    box_scores,
    gradcam_heatmaps,
    grounding_accuracy,
    random_box_accuracy,
    rank_boxes,
    readout_sweep,
    readout_variants,
    save_overlay,
)
from .retrieval import (
    RetrievalCorpus,
    encode_corpus,
    evaluate_retrieval,
    itm_scores,
    recall_metrics,
    retrieval_metrics,
)
from .vqa import (
    build_answer_vocabulary,
    normalize_answer,
    soft_score,
    soft_scores,
    vqa_accuracy,
    vqa_accuracy_of_predictions,
)
from .zero_shot import zero_shot_classify

__all__ = [
    "LinearProbe",
    "RetrievalCorpus",
    "box_iou",
    "box_scores",
    "build_answer_vocabulary",
    "dense_probe",
    "encode_corpus",
    "evaluate_retrieval",
    "fit_linear_probe",
    "gradcam_heatmaps",
    "grounding_accuracy",
    "itm_scores",
    "normalize_answer",
    "patch_features",
    "random_box_accuracy",
    "rank_boxes",
    "readout_sweep",
    "readout_variants",
    "recall_metrics",
    "retrieval_metrics",
    "save_overlay",
    "segmentation_metrics",
    "soft_score",
    "soft_scores",
    "vqa_accuracy",
    "vqa_accuracy_of_predictions",
    "zero_shot_classify",
]
