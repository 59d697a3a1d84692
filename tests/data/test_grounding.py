"""Grounding data (`mamo_hf.data.grounding`): RefCOCO+ in ALBEF's layout, and the generated set whose expressions each
refer to one object, as caption pairs and unambiguous batches."""

import json
import pickle

import numpy
import pytest

from mamo_hf.data.demo import COLOURS, SHAPES, SIZES, draw_scene
from mamo_hf.data.grounding import (
    GroundingCaptionDataset,
    ReferTarget,
    UnambiguousBatchSampler,
    expression_attributes,
    generated_grounding_samples,
    grounding_scene,
    object_box,
    read_refcoco,
    read_refer_targets,
)


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
