"""Standard data on disk: COCO and Karpathy caption files converted, Winoground, ARO and SugarCrepe read and scored.

The fixtures are tiny files in the published formats (the sources are in `mamo_hf.data.standard`'s docstrings): the
same file names, keys, nesting and value types, with a few records and generated images.
"""

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from helpers import tiny_config, tiny_tokenizer
from PIL import Image

from mamo_hf import MamoForImageTextRetrieval, MamoImageProcessorPil, MamoProcessor
from mamo_hf.data.captions import CaptionDataset
from mamo_hf.data.retrieval import load_retrieval_split
from mamo_hf.data.standard import (
    aro_examples,
    coco_caption_records,
    karpathy_caption_records,
    karpathy_images,
    karpathy_retrieval_records,
    karpathy_retrieval_split,
    sugarcrepe_examples,
    winoground_examples,
    write_json,
)
from mamo_hf.data.transforms import clean_caption
from mamo_hf.evaluation.standard import (
    ItemScores,
    choice_metrics,
    choice_outcomes,
    choice_scores,
    winoground_metrics,
    winoground_outcomes,
    winoground_scores,
)

REPOSITORY = Path(__file__).resolve().parents[1]
COLOURS = [(255, 0, 0), (0, 160, 0), (0, 0, 255), (250, 220, 0), (120, 0, 160), (255, 128, 0)]


def save_image(path: Path, colour, size=(40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def has_colour(image: Image.Image, colour, position=(0, 0)) -> bool:
    """Whether a pixel is `colour`, up to JPEG's rounding."""
    return max(abs(a - b) for a, b in zip(image.convert("RGB").getpixel(position), colour)) <= 8


def write(path: Path, value) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=1), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------------------------
# Fixtures in the published formats
# ---------------------------------------------------------------------------------------------------------------


def coco_captions(root: Path) -> Path:
    """`annotations/captions_train2014.json` with two images (in `train2014/`) and three captions."""
    images = []
    for number, image_id in enumerate((9, 25)):
        file_name = f"COCO_train2014_{image_id:012d}.jpg"
        save_image(root / "train2014" / file_name, COLOURS[number])
        images.append(
            {
                "license": 3,
                "file_name": file_name,
                "coco_url": f"http://images.cocodataset.org/train2014/{file_name}",
                "height": 30,
                "width": 40,
                "date_captured": "2013-11-14 11:18:45",
                "flickr_url": "http://farm9.staticflickr.com/8186/8119368305_4e622c8349_z.jpg",
                "id": image_id,
            }
        )
    annotations = [
        {"image_id": 9, "id": 48, "caption": "A red picture of a cat."},
        {"image_id": 25, "id": 67, "caption": "A green square on the left "},
        {"image_id": 9, "id": 126, "caption": "The cat sits on a red square."},
    ]
    info = {"description": "COCO 2014 Dataset", "url": "http://cocodataset.org", "version": "1.0", "year": 2014}
    licenses = [{"url": "http://creativecommons.org/licenses/by-nc-sa/2.0/", "id": 1, "name": "Attribution"}]
    content = {"info": info, "images": images, "licenses": licenses, "annotations": annotations}
    return write(root / "annotations" / "captions_train2014.json", content)


def karpathy_coco(root: Path) -> Path:
    """`dataset_coco.json` with one image per split (two in `test`), five sentences each."""
    images, sentence_id = [], 0
    for image_number, split in enumerate(("train", "restval", "val", "test", "test")):
        cocoid = 1000 + image_number
        folder = "train2014" if split == "train" else "val2014"
        filename = f"COCO_{folder}_{cocoid:012d}.jpg"
        save_image(root / folder / filename, COLOURS[image_number])
        sentences = []
        for number in range(5):
            raw = f"A {['red', 'green', 'blue', 'black', 'white'][number]} picture number {image_number}."
            tokens = raw.lower().rstrip(".").split()
            sentences.append({"tokens": tokens, "raw": raw, "imgid": image_number, "sentid": sentence_id})
            sentence_id += 1
        images.append(
            {
                "filepath": folder,
                "sentids": [sentence["sentid"] for sentence in sentences],
                "filename": filename,
                "imgid": image_number,
                "split": split,
                "sentences": sentences,
                "cocoid": cocoid,
            }
        )
    return write(root / "dataset_coco.json", {"images": images, "dataset": "coco"})


def karpathy_flickr(root: Path) -> Path:
    """`dataset_flickr30k.json` (no `filepath`, no `cocoid`) with a training and a test image."""
    images = []
    for image_number, (filename, split) in enumerate((("1000092795.jpg", "train"), ("1007129816.jpg", "test"))):
        save_image(root / "flickr30k-images" / filename, COLOURS[image_number])
        raw = ["Two dogs sit on the grass.", "A cat on a blue square."][image_number]
        sentence = {
            "tokens": raw.lower().rstrip(".").split(),
            "raw": raw,
            "imgid": image_number,
            "sentid": image_number,
        }
        images.append(
            {
                "sentids": [image_number],
                "imgid": image_number,
                "sentences": [sentence],
                "split": split,
                "filename": filename,
            }
        )
    return write(root / "dataset_flickr30k.json", {"images": images, "dataset": "flickr30k"})


WINOGROUND_CAPTIONS = [
    ("a red circle left of a blue square", "a blue circle left of a red square"),
    ("the dog sits on the cat", "the cat sits on the dog"),
    ("a green star above a yellow triangle", "a yellow star above a green triangle"),
]


def winoground(root: Path) -> Path:
    """`examples.jsonl` with three examples and `images/ex_<id>_img_<k>.png`."""
    lines = []
    for example_id, (caption_0, caption_1) in enumerate(WINOGROUND_CAPTIONS):
        for index in (0, 1):
            save_image(root / "images" / f"ex_{example_id}_img_{index}.png", COLOURS[2 * example_id + index])
        example = {
            "id": example_id,
            "image_0": f"ex_{example_id}_img_0",
            "image_1": f"ex_{example_id}_img_1",
            "caption_0": caption_0,
            "caption_1": caption_1,
            "tag": ["Adjective-Color", "Noun", "Adjective-Color"][example_id],
            "secondary_tag": "",
            "num_main_preds": 1,
            "collapsed_tag": ["Object", "Object", "Relation"][example_id],
        }
        lines.append(json.dumps(example))
    (root / "examples.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def aro(root: Path) -> Path:
    """`visual_genome_relation.json` (3 test cases), `visual_genome_attribution.json` (2) and `images/`: each
    image is black but for a coloured box, the box of its test cases."""
    for number, name in enumerate(("2315375.jpg", "2376493.jpg")):
        image = Image.new("RGB", (48, 40))
        image.paste(COLOURS[number], (5, 4, 25, 14))
        (root / "images").mkdir(parents=True, exist_ok=True)
        image.save(root / "images" / name, quality=95)
    box = {"bbox_x": 5, "bbox_y": 4, "bbox_w": 20, "bbox_h": 10}
    relations = [
        ("2315375.jpg", "on", "the cat is on the dog", "the dog is on the cat"),
        ("2376493.jpg", "on", "the square is on the circle", "the circle is on the square"),
        ("2315375.jpg", "left of", "the red star is left of the dog", "the dog is left of the red star"),
    ]
    write(
        root / "visual_genome_relation.json",
        [
            {"relation_name": relation, **box, "true_caption": true, "false_caption": false, "image_path": path}
            for path, relation, true, false in relations
        ],
    )
    attributions = [
        ("2315375.jpg", ["red", "large"], "the red cat and the large dog", "the large cat and the red dog"),
        (
            "2376493.jpg",
            ["green", "small"],
            "the green square and the small star",
            "the small square and the green star",
        ),
    ]
    write(
        root / "visual_genome_attribution.json",
        [
            {"attributes": attributes, **box, "true_caption": true, "false_caption": false, "image_path": path}
            for path, attributes, true, false in attributions
        ],
    )
    return root


def sugarcrepe(root: Path) -> tuple[Path, Path]:
    """`data/swap_att.json` (2 records) and `data/replace_rel.json` (1), images in `val2017/`."""
    for number in range(2):
        save_image(root / "val2017" / f"{number + 544519:012d}.jpg", COLOURS[number])
    write(
        root / "data" / "swap_att.json",
        {
            "0": {
                "filename": "000000544519.jpg",
                "caption": "A red cat with a blue dog.",
                "negative_caption": "A blue cat with a red dog.",
            },
            "1": {
                "filename": "000000544520.jpg",
                "caption": "A large green square next to a small star.",
                "negative_caption": "A small green square next to a large star.",
            },
        },
    )
    write(
        root / "data" / "replace_rel.json",
        {
            "0": {
                "filename": "000000544520.jpg",
                "caption": "The cat sits on the dog.",
                "negative_caption": "The cat sits below the dog.",
            }
        },
    )
    return root / "data", root / "val2017"


# ---------------------------------------------------------------------------------------------------------------
# Converters
# ---------------------------------------------------------------------------------------------------------------


def test_coco_captions_become_pretraining_records_that_caption_dataset_reads(tmp_path):
    records = coco_caption_records(coco_captions(tmp_path), image_folder="train2014")
    assert records == [
        {"image": "train2014/COCO_train2014_000000000009.jpg", "caption": "A red picture of a cat.", "image_id": 9},
        {
            "image": "train2014/COCO_train2014_000000000025.jpg",
            "caption": "A green square on the left ",
            "image_id": 25,
        },
        {
            "image": "train2014/COCO_train2014_000000000009.jpg",
            "caption": "The cat sits on a red square.",
            "image_id": 9,
        },
    ]
    dataset = CaptionDataset(write_json(records, tmp_path / "coco_captions.json"), image_root=tmp_path)
    items = [dataset[index] for index in range(len(dataset))]
    assert [item["caption"] for item in items] == [
        "a red picture of a cat",
        "a green square on the left",
        "the cat sits on a red square",
    ]
    assert items[0]["image_id"] == items[2]["image_id"] != items[1]["image_id"]
    assert has_colour(items[1]["image"], COLOURS[1])


def test_karpathy_training_records_and_retrieval_files_read_back(tmp_path):
    karpathy = karpathy_coco(tmp_path)
    training = karpathy_caption_records(karpathy)
    assert len(training) == 10 and {record["image_id"] for record in training} == {1000, 1001}
    assert training[0] == {
        "image": "train2014/COCO_train2014_000000001000.jpg",
        "caption": "A red picture number 0.",
        "image_id": 1000,
    }
    assert len(karpathy_caption_records(karpathy, ["train"])) == 5
    assert len(CaptionDataset(write_json(training, tmp_path / "coco_train.json"), image_root=tmp_path)) == 10

    test = karpathy_retrieval_records(karpathy, "test")
    assert [record["image"] for record in test] == [
        "val2014/COCO_val2014_000000001003.jpg",
        "val2014/COCO_val2014_000000001004.jpg",
    ]
    assert test[1]["caption"] == [
        f"A {colour} picture number 4." for colour in ("red", "green", "blue", "black", "white")
    ]
    split = load_retrieval_split(write_json(test, tmp_path / "coco_test.json"))
    assert split.images == [str(tmp_path / record["image"]) for record in test]
    assert split.texts[5] == "a red picture number 4" and split.image_to_texts == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert split.text_to_image == [0] * 5 + [1] * 5
    assert karpathy_retrieval_split(karpathy, tmp_path, "test") == split
    assert len(karpathy_retrieval_split(karpathy, tmp_path, "val").images) == 1


def test_flickr_karpathy_paths_take_the_image_folder_and_ids_the_imgid(tmp_path):
    karpathy = karpathy_flickr(tmp_path)
    assert karpathy_caption_records(karpathy, image_folder="flickr30k-images") == [
        {"image": "flickr30k-images/1000092795.jpg", "caption": "Two dogs sit on the grass.", "image_id": 0}
    ]
    test = karpathy_retrieval_records(karpathy, "test", image_folder="flickr30k-images")
    assert test == [{"image": "flickr30k-images/1007129816.jpg", "caption": ["A cat on a blue square."]}]
    split = karpathy_retrieval_split(karpathy, tmp_path, image_folder="flickr30k-images")
    assert has_colour(Image.open(split.images[0]), COLOURS[1])


# ---------------------------------------------------------------------------------------------------------------
# Benchmark readers
# ---------------------------------------------------------------------------------------------------------------


def test_winoground_examples_pair_each_caption_with_its_image(tmp_path):
    examples = winoground_examples(winoground(tmp_path))
    assert len(examples) == 3
    second = examples[1]
    assert (second.id, second.captions) == (1, WINOGROUND_CAPTIONS[1])
    assert [image.getpixel((0, 0)) for image in second.images] == [COLOURS[2], COLOURS[3]]
    assert (second.tag, second.secondary_tag, second.num_main_preds, second.collapsed_tag) == ("Noun", "", 1, "Object")
    assert [example.id for example in examples[1:]] == [1, 2]


def test_aro_items_crop_the_box_and_put_the_true_caption_second(tmp_path):
    root = aro(tmp_path)
    relation = aro_examples(root, "relation")
    assert len(relation) == 3
    first = relation[0]
    assert first.captions == ("the dog is on the cat", "the cat is on the dog") and first.answer == 1
    assert first.group == "on" and first.source.endswith("visual_genome_relation.json, record 0")
    assert first.image.size == (20, 10) and has_colour(first.image, COLOURS[0], (10, 5))  # the box alone
    attribution = aro_examples(root, "attribution")
    assert [item.group for item in attribution] == ["red_large", "green_small"]
    assert attribution[1].captions[attribution[1].answer] == "the green square and the small star"


def test_sugarcrepe_items_read_every_file_there_with_the_true_caption_first(tmp_path):
    data_root, image_root = sugarcrepe(tmp_path)
    items = sugarcrepe_examples(data_root, image_root)
    assert [item.group for item in items] == ["replace_rel", "swap_att", "swap_att"]  # SUGARCREPE_FILES order
    swap = items[1]
    assert swap.captions == ("A red cat with a blue dog.", "A blue cat with a red dog.") and swap.answer == 0
    assert has_colour(swap.image, COLOURS[0]) and swap.source.endswith("swap_att.json, record '0'")
    assert [item.group for item in sugarcrepe_examples(data_root, image_root, ["swap_att"])] == ["swap_att"] * 2
    with pytest.raises(FileNotFoundError, match="add_obj.json"):
        sugarcrepe_examples(data_root, image_root, ["add_obj"])
    with pytest.raises(FileNotFoundError, match="none of SugarCrepe's files"):
        sugarcrepe_examples(tmp_path, image_root)


def _bad_files(tmp_path: Path) -> list[tuple]:
    """(reader, file to spoil, new content, expected message) for the readers' format errors."""
    coco = coco_captions(tmp_path / "coco")
    karpathy = karpathy_coco(tmp_path / "karpathy")
    wino = winoground(tmp_path / "winoground") / "examples.jsonl"
    aro_root = aro(tmp_path / "aro")
    sugar_root, sugar_images = sugarcrepe(tmp_path / "sugarcrepe")
    good_line = wino.read_text().splitlines()[0]
    no_caption_1 = json.dumps({key: value for key, value in json.loads(good_line).items() if key != "caption_1"})
    return [
        (lambda: coco_caption_records(coco), coco, "{not json", "not valid JSON"),
        (lambda: coco_caption_records(coco), coco, {"images": []}, "'images' and 'annotations'"),
        (
            lambda: coco_caption_records(coco),
            coco,
            {"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"image_id": 2, "id": 3, "caption": "x"}]},
            r"annotations\[0\]: image_id 2 is not among",
        ),
        (lambda: karpathy_images(karpathy, ["test"]), karpathy, [], "an 'images' list"),
        (
            lambda: karpathy_images(karpathy, ["test"]),
            karpathy,
            {"images": [{"filename": "a.jpg", "split": "test", "sentences": [{"tokens": ["a"]}]}]},
            r"images\[0\]: every sentence needs its 'raw' text",
        ),
        (
            lambda: karpathy_images(karpathy, ["test"]),
            karpathy,
            {"images": [{"filename": "a.jpg", "split": "train", "sentences": []}], "dataset": "coco"},
            "no image in the split",
        ),
        (lambda: winoground_examples(wino.parent), wino, good_line + "\n{oops\n", "line 2: not valid JSON"),
        (lambda: winoground_examples(wino.parent), wino, no_caption_1 + "\n", "line 1: a Winoground example needs"),
        (lambda: aro_examples(aro_root, "relation"), aro_root / "visual_genome_relation.json", {}, "a JSON list"),
        (
            lambda: aro_examples(aro_root, "relation"),
            aro_root / "visual_genome_relation.json",
            [{"relation_name": "on", "true_caption": "a", "false_caption": "b", "image_path": "x.jpg"}],
            "record 0: an ARO test case needs",
        ),
        (
            lambda: aro_examples(aro_root, "attribution"),
            aro_root / "visual_genome_attribution.json",
            [
                {
                    "bbox_x": 0,
                    "bbox_y": 0,
                    "bbox_w": 1,
                    "bbox_h": 1,
                    "true_caption": "a",
                    "false_caption": "b",
                    "image_path": "x",
                }
            ],
            "two 'attributes'",
        ),
        (
            lambda: sugarcrepe_examples(sugar_root, sugar_images),
            sugar_root / "swap_att.json",
            [],
            "non-empty JSON object",
        ),
        (
            lambda: sugarcrepe_examples(sugar_root, sugar_images),
            sugar_root / "replace_rel.json",
            {"0": {"filename": "a.jpg", "caption": "a"}},
            "record '0': needs a 'filename'",
        ),
    ]


def test_bad_files_raise_a_value_error_naming_the_file(tmp_path):
    for read, file, content, message in _bad_files(tmp_path):
        file.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
        with pytest.raises(ValueError, match=message) as caught:
            read()
        assert str(file) in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(ValueError, match="Unknown Karpathy split 'testing'"):
        karpathy_images(tmp_path / "karpathy" / "dataset_coco.json", ["testing"])
    with pytest.raises(ValueError, match="Unknown ARO subset"):
        aro_examples(tmp_path / "aro", "order")


# ---------------------------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------------------------


def test_winoground_text_image_and_group_scores_on_hand_made_matrices():
    # Rows are captions, columns images: table[e, c, i] = s(caption c, image i).
    tables = torch.tensor(
        [
            [[0.9, 0.1], [0.2, 0.8]],  # diagonal wins everywhere: text, image, group
            [[0.9, 0.8], [0.5, 0.6]],  # image 1 prefers caption 0 (0.8 > 0.6): image only (each caption's row)
            [[0.9, 0.1], [0.6, 0.5]],  # caption 1 prefers image 0 (0.6 > 0.5): text only (each image's column)
            [[0.5, 0.5], [0.1, 0.9]],  # a tie between caption 0's images: text, not image
            [[0.1, 0.9], [0.8, 0.2]],  # everything swapped: nothing
        ]
    )
    outcomes = winoground_outcomes(tables)
    assert outcomes["text"].tolist() == [True, False, True, True, False]
    assert outcomes["image"].tolist() == [True, True, False, False, False]
    assert outcomes["group"].tolist() == [True, False, False, False, False]
    metrics = winoground_metrics(ItemScores({"itm": tables}, ["Object", "Object", "Relation", "Both", "Object"]))
    assert metrics["itm"]["text"] == 60.0 and metrics["itm"]["image"] == 40.0 and metrics["itm"]["group"] == 20.0
    assert metrics["itm"]["by_tag"]["Object"] == pytest.approx({"text": 100 / 3, "image": 200 / 3, "group": 100 / 3})
    assert metrics["count"] == 5 and metrics["tag_counts"] == {"Both": 1, "Object": 3, "Relation": 1}


def test_winoground_chance_levels_are_a_quarter_a_quarter_and_a_sixth():
    random = torch.rand(60_000, 2, 2, generator=torch.Generator().manual_seed(0))
    metrics = winoground_metrics(ItemScores({"itc": random}, ["Object"] * 60_000))["itc"]
    assert metrics["text"] == pytest.approx(25.0, abs=0.6) and metrics["image"] == pytest.approx(25.0, abs=0.6)
    assert metrics["group"] == pytest.approx(100 / 6, abs=0.6)


def test_choice_accuracy_counts_strict_wins_per_group_and_macro():
    table = torch.tensor([[0.2, 0.9], [0.7, 0.3], [0.5, 0.5], [0.4, 0.6], [0.8, 0.1]])
    answers = torch.tensor([1, 1, 1, 0, 0])  # right, wrong, tie (wrong), wrong, right
    assert choice_outcomes(table, answers).tolist() == [True, False, False, False, True]
    scores = ItemScores({"itc": table, "itm": table.flip(1)}, ["on", "on", "on", "under", "near"], answers)
    metrics = choice_metrics(scores)
    assert metrics["itc"]["accuracy"] == 40.0 and metrics["itc"]["groups"] == pytest.approx(
        {"near": 100.0, "on": 100 / 3, "under": 0.0}
    )
    assert metrics["itc"]["macro_accuracy"] == pytest.approx((100 + 100 / 3 + 0) / 3)
    assert metrics["itm"]["accuracy"] == 40.0  # flipped scores: items 2 (a tie stays wrong) and 4 right
    assert metrics["count"] == 5 and metrics["group_counts"] == {"near": 1, "on": 3, "under": 1}
    kept = choice_metrics(scores, min_group_size=2)
    assert kept["macro_groups"] == 1 and kept["itc"]["macro_accuracy"] == pytest.approx(100 / 3)
    assert choice_metrics(scores, excluded_groups=["on"])["itc"]["macro_accuracy"] == 50.0


# ---------------------------------------------------------------------------------------------------------------
# Scores of a model
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_and_processor():
    torch.manual_seed(0)
    processor = MamoProcessor(
        image_processor=MamoImageProcessorPil(size={"height": 32, "width": 32}), tokenizer=tiny_tokenizer()
    )
    return MamoForImageTextRetrieval(tiny_config()).eval(), processor


def direct_scores(model, processor, images, texts) -> dict[str, torch.Tensor]:
    """ITC and ITM of the pairs `(images[n], texts[n])`, by one forward of the retrieval model."""
    inputs = processor(images=images, text=[clean_caption(text) for text in texts], padding=True, return_tensors="pt")
    with torch.no_grad():
        outputs = model(**inputs)
    return {"itc": (outputs.image_embeds * outputs.text_embeds).sum(-1), "itm": outputs.itm_scores}


def test_scores_equal_a_direct_forward_of_each_pair_across_chunks(model_and_processor, tmp_path):
    model, processor = model_and_processor
    items = aro_examples(aro(tmp_path / "aro"), "relation")
    scores = choice_scores(model, processor, items, batch_size=2, chunk_size=2)
    assert scores.groups == ["on", "on", "left of"] and scores.answers.tolist() == [1, 1, 1]
    for row, item in enumerate(items):
        expected = direct_scores(model, processor, [item.image] * 2, list(item.captions))
        for kind in ("itc", "itm"):
            torch.testing.assert_close(scores.scores[kind][row], expected[kind], atol=1e-5, rtol=1e-4)

    examples = winoground_examples(winoground(tmp_path / "winoground"))
    tables = winoground_scores(model, processor, examples, batch_size=3, chunk_size=2)
    assert tables.scores["itm"].shape == (3, 2, 2) and tables.groups == ["Object", "Object", "Relation"]
    for row, example in enumerate(examples):
        images = [example.images[image] for caption in (0, 1) for image in (0, 1)]
        texts = [example.captions[caption] for caption in (0, 1) for image in (0, 1)]
        expected = direct_scores(model, processor, images, texts)
        for kind in ("itc", "itm"):
            torch.testing.assert_close(tables.scores[kind][row], expected[kind].view(2, 2), atol=1e-5, rtol=1e-4)
    # A bare MamoModel has no ITM head: ITC only.
    assert set(choice_scores(model.mamo, processor, items).scores) == {"itc"}


# ---------------------------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------------------------


def benchmark_script():
    spec = importlib.util.spec_from_file_location(
        "standard_benchmarks", REPOSITORY / "benchmarks" / "standard_benchmarks.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_command_line_converts_scores_and_reports_bad_files_in_one_line(model_and_processor, tmp_path):
    script = benchmark_script()
    karpathy = karpathy_coco(tmp_path)
    script.main(["convert-karpathy", "--karpathy", str(karpathy), "--output-dir", str(tmp_path / "converted")])
    written = {path.name: json.loads(path.read_text()) for path in (tmp_path / "converted").iterdir()}
    assert sorted(written) == ["coco_test.json", "coco_train.json", "coco_val.json"]
    assert len(written["coco_train.json"]) == 10 and len(written["coco_test.json"]) == 2
    script.main(["convert-coco", "--annotations", str(coco_captions(tmp_path)), "--output", str(tmp_path / "c.json")])
    assert len(json.loads((tmp_path / "c.json").read_text())) == 3

    model, processor = model_and_processor
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    output = tmp_path / "scores" / "winoground.json"
    root = winoground(tmp_path / "winoground")
    script.main(["winoground", "--root", str(root), "--model", str(tmp_path / "model"), "--output", str(output)])
    report = json.loads(output.read_text())
    assert report["benchmark"] == "winoground" and report["count"] == 3
    assert set(report["itm"]) == {"text", "image", "group", "by_tag"} and report["chance"]["text"] == 25.0
    coco_output = tmp_path / "scores" / "coco.json"
    model_folder = str(tmp_path / "model")
    script.main(
        [
            "coco",
            "--karpathy",
            str(karpathy),
            "--image-root",
            str(tmp_path),
            "--model",
            model_folder,
            "--output",
            str(coco_output),
        ]
    )
    coco_report = json.loads(coco_output.read_text())
    assert coco_report["images"] == 2 and coco_report["texts"] == 10 and "txt_r1" in coco_report["itm"]

    def one_line_error(argv: list[str]) -> str:
        with pytest.raises(SystemExit) as caught:
            script.main(argv)
        message = str(caught.value)
        assert message.startswith(f"standard_benchmarks.py {argv[0]}: error: ") and "\n" not in message
        return message

    assert "no config.json" in one_line_error(["winoground", "--root", str(root), "--model", str(tmp_path)])
    assert "visual_genome_relation.json" in one_line_error(["aro", "--root", str(tmp_path), "--model", model_folder])
    (root / "examples.jsonl").write_text("{oops\n")
    assert "line 1: not valid JSON" in one_line_error(["winoground", "--root", str(root), "--model", model_folder])
