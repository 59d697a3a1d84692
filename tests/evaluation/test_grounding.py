"""Weakly-supervised grounding (`mamo_hf.evaluation.grounding`): Grad-CAM heat maps, box ranking, accuracy and
overlays."""

import pytest
import torch
from PIL import Image

from mamo_hf import MamoConfig, MamoForImageTextRetrieval
from mamo_hf.configuration_mamo import special_token_ids
from mamo_hf.data import tiny_config_and_processor
from mamo_hf.data.demo import demo_tokenizer
from mamo_hf.data.grounding import GroundingSample, generated_grounding_samples
from mamo_hf.evaluation.grounding import (
    box_iou,
    box_scores,
    enlarged,
    gradcam_heatmaps,
    grounding_accuracy,
    query_mask,
    random_box_accuracy,
    rank_boxes,
    save_overlay,
)

IMAGE_SIZE, PATCH_SIZE = 32, 8

GRID = IMAGE_SIZE // PATCH_SIZE


@pytest.fixture(scope="module")
def model_and_processor():
    torch.manual_seed(0)
    config, processor = tiny_config_and_processor(IMAGE_SIZE, PATCH_SIZE)
    return MamoForImageTextRetrieval(config), processor


def heatmaps_for(model, processor, images, texts, **kwargs):
    inputs = processor(images=images, text=texts, padding="longest", return_tensors="pt")
    return gradcam_heatmaps(model, inputs["input_ids"], inputs["attention_mask"], inputs["pixel_values"], **kwargs)


def test_heatmaps_cover_the_patch_grid_are_non_negative_and_depend_on_the_expression(model_and_processor):
    model, processor = model_and_processor
    image = generated_grounding_samples(1, seed=3, image_size=IMAGE_SIZE)[0].image
    heatmaps = heatmaps_for(model, processor, [image, image], ["the red circle", "the large blue square"])
    assert heatmaps.shape == (2, GRID, GRID)
    assert (heatmaps >= 0).all() and (heatmaps > 0).any()
    assert not torch.allclose(heatmaps[0], heatmaps[1])


def test_heatmaps_are_per_pair_in_a_batch(model_and_processor):
    model, processor = model_and_processor
    samples = generated_grounding_samples(2, seed=4, image_size=IMAGE_SIZE)
    images = [samples[0].image, samples[-1].image]
    texts = ["the red circle", "the small square"]
    batched = heatmaps_for(model, processor, images, texts)
    alone = torch.cat([heatmaps_for(model, processor, [image], [text]) for image, text in zip(images, texts)])
    torch.testing.assert_close(batched, alone, rtol=1e-4, atol=1e-9)


def test_gradcam_leaves_the_model_as_it_found_it(model_and_processor):
    model, processor = model_and_processor
    image = generated_grounding_samples(1, seed=3, image_size=IMAGE_SIZE)[0].image
    model.train()
    fusion_config = model.mamo.fusion_encoder.config
    assert fusion_config._attn_implementation != "eager"
    before = fusion_config._attn_implementation
    heatmaps_for(model, processor, [image], ["the circle"])
    assert fusion_config._attn_implementation == before and model.training
    assert all(parameter.grad is None for parameter in model.parameters())
    model.eval()


def test_gradcam_reads_the_last_layer_only_through_cls(model_and_processor):
    model, processor = model_and_processor
    image = generated_grounding_samples(1, seed=3, image_size=IMAGE_SIZE)[0].image
    last = len(model.mamo.fusion_encoder.layers) - 1
    with pytest.raises(ValueError, match="last layer"):
        heatmaps_for(model, processor, [image], ["the circle"], layer=last)
    with pytest.raises(ValueError, match="queries must be"):
        heatmaps_for(model, processor, [image], ["the circle"], queries="tokens")
    cls = heatmaps_for(model, processor, [image], ["the circle"], layer=last, queries="cls")
    text = heatmaps_for(model, processor, [image], ["the circle"], layer=last, queries="text")
    assert (cls > 0).any()
    torch.testing.assert_close(text, cls / 4)  # [CLS] the circle [SEP]: only [CLS] has a gradient in the last layer


def test_query_masks():
    tokenizer = demo_tokenizer()
    config = MamoConfig.tiny(vocab_size=len(tokenizer), special_token_ids=special_token_ids(tokenizer)).text_config
    tokens = tokenizer(["the red circle", "the circle"], padding="longest", return_tensors="pt")
    masks = {
        queries: query_mask(tokens["input_ids"], tokens["attention_mask"], config, queries).int().tolist()
        for queries in ("words", "text", "cls")
    }
    assert masks["words"] == [[0, 1, 1, 1, 0], [0, 1, 1, 0, 0]]
    assert masks["text"] == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]
    assert masks["cls"] == [[1, 0, 0, 0, 0], [1, 0, 0, 0, 0]]


def test_box_scores_pick_the_hot_box_and_divide_by_the_square_root_of_the_area():
    # A heat map at image resolution is not changed by the upsampling, so the scores are exact.
    heat = torch.zeros(40, 60)
    heat[10:20, 30:40] = 1.0
    hot, cold, around_hot = (30, 10, 10, 10), (0, 0, 10, 10), (20, 0, 40, 40)
    scores = box_scores(heat, [cold, hot, around_hot], image_size=(60, 40))
    torch.testing.assert_close(scores, torch.tensor([0.0, 100 / 10, 100 / 40], dtype=torch.float64))
    assert rank_boxes(heat, [cold, around_hot, hot], image_size=(60, 40)) == 2

    uniform = box_scores(torch.ones(40, 60), [(0, 0, 10, 10), (0, 0, 20, 20), (5, 5, 0, 10)], image_size=(60, 40))
    torch.testing.assert_close(uniform, torch.tensor([10.0, 20.0, -torch.inf], dtype=torch.float64))


def test_box_scores_upsample_a_patch_grid_to_the_image():
    heat = torch.zeros(4, 4)
    heat[3, 0] = 1.0  # bottom-left patch
    boxes = [(0, 0, 16, 16), (48, 0, 16, 16), (0, 48, 16, 16), (48, 48, 16, 16)]
    assert rank_boxes(heat, boxes, image_size=(64, 64)) == 2


def test_box_iou():
    assert box_iou((0, 0, 2, 2), (0, 0, 2, 2)) == 1.0
    assert box_iou((0, 0, 2, 2), (5, 5, 2, 2)) == 0.0
    assert box_iou((0, 0, 2, 2), (1, 0, 2, 2)) == pytest.approx(2 / 6)
    assert box_iou((0, 0, 4, 4), (1, 1, 2, 2)) == pytest.approx(4 / 16)


def test_random_baseline_is_the_mean_share_of_right_proposals():
    boxes = ((0, 0, 10, 10), (20, 0, 10, 10), (0, 20, 10, 10), (1, 1, 10, 10))
    by_index = [GroundingSample("a.png", "x", boxes[:2], target_index=0), GroundingSample("a.png", "x", boxes, 3)]
    assert random_box_accuracy(by_index) == pytest.approx(100 * (1 / 2 + 1 / 4) / 2)
    by_box = GroundingSample("a.png", "x", boxes, target_box=(0, 0, 10, 10))  # boxes 0 and 3 have IoU >= 0.5
    assert random_box_accuracy([by_box]) == pytest.approx(50.0)
    assert random_box_accuracy([by_box], iou_threshold=0.9) == pytest.approx(25.0)


def test_grounding_accuracy_reports_accuracy_baseline_and_splits(model_and_processor):
    model, processor = model_and_processor
    samples = generated_grounding_samples(4, seed=5, image_size=IMAGE_SIZE)
    samples = [
        GroundingSample(**{**vars(sample), "split": ("val", "testA")[i % 2]}) for i, sample in enumerate(samples)
    ]
    metrics = grounding_accuracy(model, processor, samples, batch_size=3)
    assert metrics["num_samples"] == len(samples) == len(metrics["predictions"])
    assert 0 <= metrics["accuracy"] <= 100
    assert metrics["random_baseline"] == pytest.approx(random_box_accuracy(samples))
    assert sum(split["num_samples"] for split in metrics["splits"].values()) == len(samples)
    assert all(0 <= prediction < len(sample.boxes) for prediction, sample in zip(metrics["predictions"], samples))


def test_overlay_is_a_readable_png(tmp_path):
    sample = generated_grounding_samples(1, seed=6, image_size=IMAGE_SIZE)[0]
    heat = torch.rand(GRID, GRID)
    path = save_overlay(sample.image, heat, sample.boxes, 0, sample.target_index, tmp_path / "out" / "overlay.png")
    with Image.open(path) as written:
        assert written.format == "PNG" and written.mode == "RGB"
        assert min(written.size) >= 256
    save_overlay(sample.image, torch.zeros(GRID, GRID), sample.boxes, 1, sample.boxes[0], tmp_path / "box.png")
    assert (tmp_path / "box.png").stat().st_size > 0


def test_small_images_are_enlarged_pixel_for_pixel_to_a_readable_size():
    image = Image.new("RGB", (64, 48), (10, 20, 30))
    image.putpixel((3, 5), (250, 0, 0))
    large = enlarged(image)
    assert large.size == (384, 288)  # the least integer factor, 6, that brings the shorter side to 256
    assert {large.getpixel((3 * 6 + dx, 5 * 6 + dy)) for dx in range(6) for dy in range(6)} == {(250, 0, 0)}
    assert large.getpixel((3 * 6 + 6, 5 * 6)) == (10, 20, 30)  # nearest neighbour: no blur into the next block
    photo = Image.new("RGB", (300, 400))
    assert enlarged(photo) is photo


def test_gradcam_names_the_model_it_needs(model_and_processor):
    model, processor = model_and_processor
    image = generated_grounding_samples(1, seed=3, image_size=IMAGE_SIZE)[0].image
    with pytest.raises(TypeError, match="MamoModel has no head for: pass a MamoForImageTextRetrieval"):
        heatmaps_for(model.mamo, processor, [image], ["the circle"])
