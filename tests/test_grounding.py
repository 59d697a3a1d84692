"""Weakly-supervised grounding: Grad-CAM heat maps, box ranking, accuracy, overlays and the grounding data."""

import json
import pickle

import numpy
import pytest
import torch
from PIL import Image

from mamo_hf import MamoConfig, MamoForImageTextRetrieval
from mamo_hf.configuration_mamo import special_token_ids
from mamo_hf.data import tiny_config_and_processor
from mamo_hf.data.demo import COLOURS, SHAPES, SIZES, demo_tokenizer, draw_scene
from mamo_hf.data.grounding import (
    GroundingCaptionDataset,
    GroundingSample,
    ReferTarget,
    UnambiguousBatchSampler,
    expression_attributes,
    generated_grounding_samples,
    grounding_scene,
    object_box,
    read_refcoco,
    read_refer_targets,
)
from mamo_hf.evaluation.grounding import (
    box_iou,
    box_scores,
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


# --------------------------------------------------------------------------------------------------------------------
# Grad-CAM
# --------------------------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------------------------
# Boxes
# --------------------------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------------------------


def write_refcoco_files(tmp_path, with_bbox: bool):
    records = [
        {"image": "train2014/COCO_train2014_000000000042.jpg", "text": "Left Man, in red!", "ref_id": 7},
        {"image": "train2014/COCO_train2014_000000000043.jpg", "text": "the dog", "ref_id": 8},
    ]
    if with_bbox:
        records[0] |= {"bbox": [1, 2, 30, 40], "split": "val"}
        records[1] |= {"bbox": [5, 5, 10, 10], "split": "testB"}
    (tmp_path / "refcoco+_val.json").write_text(json.dumps(records))
    detections = {"42": [[0, 0, 30, 40, 0.9], [50, 50, 20, 20, 0.5]], "43": [[5, 5, 10, 10, 0.8]]}
    (tmp_path / "dets.json").write_text(json.dumps(detections))
    return tmp_path / "refcoco+_val.json", tmp_path / "dets.json"


def test_refcoco_reader_with_refer_ground_truth(tmp_path):
    annotations, detections = write_refcoco_files(tmp_path, with_bbox=False)
    refs = [
        {"ref_id": 7, "ann_id": 100, "image_id": 42, "split": "testA", "sentences": []},
        {"ref_id": 8, "ann_id": 101, "image_id": 43, "split": "testB", "sentences": []},
    ]
    (tmp_path / "refs(unc).p").write_bytes(pickle.dumps(refs))
    instances = {"annotations": [{"id": 100, "bbox": [1, 2, 30, 40]}, {"id": 101, "bbox": [5, 5, 10, 10]}]}
    (tmp_path / "instances.json").write_text(json.dumps(instances))
    targets = read_refer_targets(tmp_path / "refs(unc).p", tmp_path / "instances.json")
    assert targets[7].box == (1.0, 2.0, 30.0, 40.0) and targets[8].split == "testB"

    samples = read_refcoco(annotations, detections, image_root=tmp_path / "coco", targets=targets)
    first = samples[0]
    assert first.image == str(tmp_path / "coco" / "train2014" / "COCO_train2014_000000000042.jpg")
    assert first.text == "left man in red"
    assert first.boxes == ((0.0, 0.0, 30.0, 40.0), (50.0, 50.0, 20.0, 20.0))
    assert first.target_box == (1.0, 2.0, 30.0, 40.0) and first.ref_id == 7 and first.split == "testA"
    assert [sample.ref_id for sample in read_refcoco(annotations, detections, targets=targets, splits=("testB",))] == [
        8
    ]


def test_refcoco_reader_with_boxes_in_the_records_and_its_errors(tmp_path):
    annotations, detections = write_refcoco_files(tmp_path, with_bbox=True)
    samples = read_refcoco([annotations], detections)
    assert [sample.split for sample in samples] == ["val", "testB"]
    assert samples[1].boxes == ((5.0, 5.0, 10.0, 10.0),) and samples[1].target_box == (5.0, 5.0, 10.0, 10.0)

    annotations, detections = write_refcoco_files(tmp_path, with_bbox=False)
    with pytest.raises(ValueError, match="no ground truth for ref_id 7"):
        read_refcoco(annotations, detections)
    (tmp_path / "dets.json").write_text(json.dumps({"43": [[0, 0, 1, 1]]}))
    with pytest.raises(ValueError, match="no proposals for image id 42"):
        read_refcoco(annotations, detections, targets={7: ReferTarget(42, (0, 0, 1, 1), "val")})


def expression_words(text: str) -> dict[str, str]:
    words = text.split()
    assert words[0] == "the" and not {"left", "right", "top", "bottom", "middle", "center"} & set(words)
    kinds = {"colour": COLOURS, "shape": SHAPES, "size": SIZES}
    return {kind: word for word in words[1:] for kind, vocabulary in kinds.items() if word in vocabulary}


def test_generated_expressions_refer_to_one_object_and_the_set_is_deterministic():
    samples = generated_grounding_samples(30, seed=2)
    again = generated_grounding_samples(30, seed=2)
    assert [(s.text, s.boxes, s.target_index) for s in samples] == [(s.text, s.boxes, s.target_index) for s in again]
    assert samples[0].image.tobytes() == again[0].image.tobytes()
    assert [s.text for s in generated_grounding_samples(30, seed=3)] != [s.text for s in samples]

    position = 0
    for index in range(30):
        scene = grounding_scene(2, index)
        assert 2 <= len(scene.objects) <= 3
        for target, expression in enumerate(scene.expressions):
            named = expression_words(expression)
            assert "shape" in named
            matching = [i for i, o in enumerate(scene.objects) if all(getattr(o, k) == v for k, v in named.items())]
            assert matching == [target]
            sample = samples[position]
            assert sample.text == expression and sample.target_index == target
            assert sample.boxes[target] == object_box(scene.objects[target], 64)
            position += 1
    assert position == len(samples)


def test_object_boxes_enclose_the_drawn_shapes():
    scene = grounding_scene(0, 0)
    image = draw_scene(scene.objects, 64)
    boxes = [object_box(scene_object, 64) for scene_object in scene.objects]
    pixels = numpy.asarray(image)
    rows, columns = (pixels != pixels[0, 0]).any(axis=-1).nonzero()
    drawn = list(zip(columns.tolist(), rows.tolist()))

    def inside(point, box):
        return box[0] - 1 <= point[0] <= box[0] + box[2] + 1 and box[1] - 1 <= point[1] <= box[1] + box[3] + 1

    assert all(any(inside(point, box) for box in boxes) for point in drawn)
    assert all(sum(inside(point, box) for point in drawn) > 0.4 * box[2] * box[3] for box in boxes)


def test_caption_pairs_are_the_expressions_with_the_scene_as_image_id():
    dataset = GroundingCaptionDataset(5, seed=1, image_size=48)
    expected = [(index, expression) for index in range(5) for expression in grounding_scene(1, index).expressions]
    assert len(dataset) == len(expected)
    items = [dataset[index] for index in range(len(dataset))]
    assert [(item["image_id"], item["caption"]) for item in items] == expected
    assert items[0]["image"].size == (48, 48)


def test_unambiguous_batches_hold_no_expression_true_of_another_pairs_image():
    dataset = GroundingCaptionDataset(200, seed=4)
    sampler = UnambiguousBatchSampler(dataset, batch_size=16, num_batches=5, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 5
    assert batches == list(UnambiguousBatchSampler(dataset, batch_size=16, num_batches=5, seed=0))
    for batch in batches:
        assert 8 <= len(batch) <= 16
        scenes = [dataset.pairs[index][0] for index in batch]
        assert len(set(scenes)) == len(scenes)
        for index in batch:
            scene, target = dataset.pairs[index]
            named = expression_attributes(dataset.scenes[scene].expressions[target])
            for other in set(scenes) - {scene}:
                assert not any(
                    all(getattr(o, k) == v for k, v in named.items()) for o in dataset.scenes[other].objects
                )


def test_gradcam_names_the_model_it_needs(model_and_processor):
    model, processor = model_and_processor
    image = generated_grounding_samples(1, seed=3, image_size=IMAGE_SIZE)[0].image
    with pytest.raises(TypeError, match="MamoModel has no head for: pass a MamoForImageTextRetrieval"):
        heatmaps_for(model.mamo, processor, [image], ["the circle"])
