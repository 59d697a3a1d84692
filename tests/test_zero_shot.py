"""Zero-shot image classification and N×M scoring, as CLIP users expect: `MamoModel` and the retrieval head score
`N` images against `M` texts, the transformers pipeline works by path, by object and through `trust_remote_code`,
and `zero_shot_classify` re-ranks the best labels by ITM."""

import json
import textwrap

import pytest
import torch
from helpers import random_pairs, run_in_fresh_process, tiny_config, tiny_tokenizer
from PIL import Image
from transformers import AutoModelForZeroShotImageClassification, pipeline

from mamo_hf import MamoForImageTextRetrieval, MamoForPreTraining, MamoImageProcessorPil, MamoModel, MamoProcessor
from mamo_hf.evaluation import zero_shot_classify

LABELS = ["red circle", "blue square", "green triangle"]
COLOURS = ((200, 30, 30), (20, 40, 220))


def tiny_processor():
    return MamoProcessor(
        image_processor=MamoImageProcessorPil(size={"height": 32, "width": 32}), tokenizer=tiny_tokenizer()
    )


@pytest.fixture
def saved(tmp_path):
    """A pre-training checkpoint with its processor and two images."""
    torch.manual_seed(0)
    MamoForPreTraining(tiny_config()).save_pretrained(tmp_path)
    tiny_processor().save_pretrained(tmp_path)
    for index, colour in enumerate(COLOURS):
        Image.new("RGB", (40, 30), colour).save(tmp_path / f"image{index}.png")
    return tmp_path


def images(folder):
    return [Image.open(folder / f"image{index}.png").convert("RGB") for index in range(len(COLOURS))]


@pytest.mark.parametrize("model_class", [MamoModel, MamoForImageTextRetrieval])
def test_n_images_against_m_texts_give_the_itc_scores_of_every_pair(model_class):
    torch.manual_seed(0)
    model = model_class(tiny_config()).eval()
    pairs = random_pairs(model.config, batch_size=4)
    with torch.no_grad():
        paired = model(**pairs)
        three_texts = model(
            pixel_values=pairs["pixel_values"][:2],
            input_ids=pairs["input_ids"][:3],
            attention_mask=pairs["attention_mask"][:3],
        )
    assert three_texts.logits_per_image.shape == (2, 3) and three_texts.logits_per_text.shape == (3, 2)
    torch.testing.assert_close(three_texts.logits_per_image, paired.logits_per_image[:2, :3])
    assert three_texts.last_hidden_state is None  # nothing to fuse without pairs
    with pytest.raises(ValueError, match="2 images and 4 texts"):
        model(**{**pairs, "pixel_values": pairs["pixel_values"][:2]}, return_loss=True)


def test_mamo_model_returns_clips_symmetric_itc_loss():
    torch.manual_seed(0)
    model = MamoModel(tiny_config())
    pairs = random_pairs(model.config, batch_size=4)
    outputs = model(**pairs, return_loss=True)
    targets = torch.arange(4)
    expected = (
        torch.nn.functional.cross_entropy(outputs.logits_per_image, targets)
        + torch.nn.functional.cross_entropy(outputs.logits_per_text, targets)
    ) / 2
    torch.testing.assert_close(outputs.loss, expected)
    outputs.loss.backward()
    assert model.log_temperature.grad is not None
    assert model(**pairs).loss is None
    assert model(**pairs, fuse_pairs=False).pooler_output is None


def test_pipeline_by_path_and_by_object_agree_with_the_model(saved):
    by_path = pipeline("zero-shot-image-classification", model=str(saved))
    assert type(by_path.model) is MamoForImageTextRetrieval
    assert type(AutoModelForZeroShotImageClassification.from_pretrained(saved)) is MamoForImageTextRetrieval
    processor = tiny_processor()
    model = MamoModel.from_pretrained(saved).eval()
    by_object = pipeline(
        "zero-shot-image-classification",
        model=model,
        tokenizer=processor.tokenizer,
        image_processor=processor.image_processor,
    )
    image = images(saved)[0]
    results = by_path(image, candidate_labels=LABELS, hypothesis_template="a {}")
    assert sorted(result["label"] for result in results) == sorted(LABELS)
    assert sum(result["score"] for result in results) == pytest.approx(1.0)
    inputs = processor(images=[image], text=[f"a {label}" for label in LABELS], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = model(**inputs).logits_per_image[0].softmax(-1)
    scores = {result["label"]: result["score"] for result in results}
    assert [scores[label] for label in LABELS] == pytest.approx(expected.tolist(), abs=1e-5)
    same = by_object(image, candidate_labels=LABELS, hypothesis_template="a {}")
    assert [result["label"] for result in same] == [result["label"] for result in results]
    assert [result["score"] for result in same] == pytest.approx([result["score"] for result in results], abs=1e-5)


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


REMOTE_HEADS = textwrap.dedent(
    """
    import json, sys
    sys.modules["mamo_hf"] = None  # the folder's own code must suffice
    from PIL import Image
    import transformers

    folder = sys.argv[1]
    loaded = {}
    for auto_class in json.load(open(f"{folder}/config.json"))["auto_map"]:
        if auto_class.startswith("AutoModel"):
            model = getattr(transformers, auto_class).from_pretrained(folder, trust_remote_code=True)
            loaded[auto_class] = type(model).__name__
    classify = transformers.pipeline("zero-shot-image-classification", model=folder, trust_remote_code=True)
    results = classify(Image.open(f"{folder}/image0.png"), candidate_labels=json.load(open(f"{folder}/labels.json")))
    print("RESULT", json.dumps({"loaded": loaded, "pipeline": results}))
    """
)


def test_every_head_and_the_pipeline_load_with_trust_remote_code_without_the_package(saved):
    (saved / "labels.json").write_text(json.dumps(LABELS))
    result = run_in_fresh_process(REMOTE_HEADS, saved)
    assert result.returncode == 0, result.stderr[-3000:]
    remote = json.loads(result.stdout.split("RESULT ", 1)[1])
    assert remote["loaded"] == {
        "AutoModel": "MamoModel",
        "AutoModelForPreTraining": "MamoForPreTraining",
        "AutoModelForVisualQuestionAnswering": "MamoForQuestionAnswering",
        "AutoModelForZeroShotImageClassification": "MamoForImageTextRetrieval",
        "AutoModelForSequenceClassification": "MamoForVisualReasoning",
    }
    local = pipeline("zero-shot-image-classification", model=str(saved))(images(saved)[0], candidate_labels=LABELS)
    assert [entry["label"] for entry in remote["pipeline"]] == [entry["label"] for entry in local]
    assert [entry["score"] for entry in remote["pipeline"]] == pytest.approx([entry["score"] for entry in local])


@pytest.mark.parametrize(
    "head", ["MamoForImageTextRetrieval", "MamoForPreTraining", "MamoForQuestionAnswering", "MamoForVisualReasoning"]
)
def test_every_head_offers_the_features_api_of_its_encoders(head):
    import mamo_hf
    from mamo_hf import MamoModel

    config = tiny_config()
    torch.manual_seed(0)
    model = getattr(mamo_hf, head)(config).eval()
    base = MamoModel(config).eval()
    base.load_state_dict(model.mamo.state_dict())
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    ids = torch.tensor([[2, 10, 11, 3], [2, 12, 3, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        image, text = model.get_image_features(pixels), model.get_text_features(ids, attention_mask=mask)
        torch.testing.assert_close(image.pooler_output, base.get_image_features(pixels).pooler_output)
        torch.testing.assert_close(text.pooler_output, base.get_text_features(ids, attention_mask=mask).pooler_output)
    torch.testing.assert_close(image.pooler_output.norm(dim=-1), torch.ones(2))


def test_the_feature_extraction_pipelines_give_the_features_api_of_a_saved_checkpoint(saved):
    """`pipeline("image-feature-extraction")` (images alone) and `pipeline("feature-extraction")` (texts alone) load
    the `MamoModel` of a pre-training checkpoint and return what `get_image_features` / `get_text_features` do."""
    model, processor = MamoModel.from_pretrained(saved).eval(), MamoProcessor.from_pretrained(saved)
    image = images(saved)[0]
    pixels = processor(images=[image], return_tensors="pt")["pixel_values"]
    ids = processor(text=["red circle"], return_tensors="pt")
    with torch.no_grad():
        image_features = model.get_image_features(pixels)
        text_features = model.get_text_features(ids["input_ids"], attention_mask=ids["attention_mask"])
    pooled = pipeline("image-feature-extraction", model=str(saved))(image, pool=True)
    torch.testing.assert_close(torch.tensor(pooled), image_features.pooler_output, atol=1e-5, rtol=1e-5)
    states = pipeline("image-feature-extraction", model=str(saved))(image)
    torch.testing.assert_close(torch.tensor(states), image_features.last_hidden_state, atol=1e-5, rtol=1e-5)
    text_states = pipeline("feature-extraction", model=str(saved))("red circle")
    torch.testing.assert_close(torch.tensor(text_states), text_features.last_hidden_state, atol=1e-5, rtol=1e-5)


def test_one_modality_alone_is_checked_like_a_pair():
    model = MamoModel(tiny_config()).eval()
    with pytest.raises(ValueError, match="pixel_values"):
        model(pixel_values=torch.zeros(1, 3, 32, 32, dtype=torch.long))
    with pytest.raises(ValueError, match="vocabulary|vocab"):
        model(input_ids=torch.tensor([[2, 10**6, 3]]))
