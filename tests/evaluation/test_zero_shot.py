"""`zero_shot_classify` (`mamo_hf.evaluation.zero_shot`) re-ranks the best labels by ITM."""

import pytest
import torch
from helpers import LABELS, images, save_checkpoint_and_images, tiny_processor

from mamo_hf import MamoForImageTextRetrieval, MamoForPreTraining, MamoModel
from mamo_hf.evaluation import zero_shot_classify


@pytest.fixture
def saved(tmp_path):
    return save_checkpoint_and_images(tmp_path)


def test_zero_shot_classify_reranks_the_top_labels_by_itm(saved):
    model = MamoForPreTraining.from_pretrained(saved).eval()
    processor = tiny_processor()
    plain = zero_shot_classify(model, processor, images(saved), LABELS)
    reranked = zero_shot_classify(model, processor, images(saved), LABELS, rerank_top_k=2)
    for itc, itm in zip(plain, reranked):
        assert [result["score"] for result in itc] == sorted((result["score"] for result in itc), reverse=True)
        assert {result["label"] for result in itm[:2]} == {result["label"] for result in itc[:2]}
        assert itm[2] == itc[2] and "itm_score" not in itm[2]
        assert itm[0]["itm_score"] >= itm[1]["itm_score"]
    # The ITM scores are the retrieval head's match probabilities of those pairs.
    retrieval = MamoForImageTextRetrieval.from_pretrained(saved).eval()
    best = reranked[0][0]
    inputs = processor(images=images(saved)[:1], text=[best["label"]], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert retrieval(**inputs).itm_scores.item() == pytest.approx(best["itm_score"], abs=1e-5)
    with pytest.raises(ValueError, match="ITM head"):
        zero_shot_classify(MamoModel.from_pretrained(saved), processor, images(saved), LABELS, rerank_top_k=2)
