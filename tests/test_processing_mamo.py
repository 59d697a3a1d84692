"""Tests of `MamoProcessor`: transformers' `ProcessorTesterMixin`, then MAMO's own behaviour (outputs, truncation,
pairs, sample counts, and `save_pretrained` / `AutoProcessor.from_pretrained`, with and without `mamo_hf`)."""

import json
import os
import pickle
import subprocess
import sys
import tempfile
import textwrap
import unittest

import numpy as np
import pytest
import torch
from hf_common_tests.test_processing_common import ProcessorTesterMixin
from PIL import Image
from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer, BertTokenizer
from transformers.utils import is_torchvision_available

import mamo_hf  # registers MAMO with the Auto classes
from mamo_hf.image_processing_mamo import MamoImageProcessor, MamoImageProcessorPil
from mamo_hf.processing_mamo import MamoProcessor

IMAGE_PROCESSOR_CLASS = MamoImageProcessor if is_torchvision_available() else MamoImageProcessorPil
WORDS = ["a", "dog", "cat", "on", "the", "grass", "lower", "newer", "upper", "older", "longer", "string"]
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PAD, UNK, CLS, SEP = 0, 1, 2, 3


def tiny_bert_tokenizer(**kwargs) -> BertTokenizer:
    """A real (Rust-backed) BERT WordPiece tokenizer over a vocabulary of a few words."""
    return BertTokenizer(vocab={token: index for index, token in enumerate(SPECIAL_TOKENS + WORDS)}, **kwargs)


def word_ids(*words: str) -> list[int]:
    return [len(SPECIAL_TOKENS) + WORDS.index(word) for word in words]


def image(seed: int = 0, height: int = 30, width: int = 40) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def make_processor(image_processor_class=IMAGE_PROCESSOR_CLASS, **tokenizer_kwargs) -> MamoProcessor:
    image_processor = image_processor_class(size={"height": 32, "width": 32})
    return MamoProcessor(image_processor=image_processor, tokenizer=tiny_bert_tokenizer(**tokenizer_kwargs))


# ---------------------------------------------------------------------------------------------------------------
# transformers' common suite
# ---------------------------------------------------------------------------------------------------------------


class MamoProcessorTest(ProcessorTesterMixin, unittest.TestCase):
    processor_class = MamoProcessor

    @classmethod
    def _setup_image_processor(cls):
        return IMAGE_PROCESSOR_CLASS()

    @classmethod
    def _setup_tokenizer(cls):
        return tiny_bert_tokenizer()

    @unittest.skip(
        reason="MAMO pairs every caption with an image: a batch in which some samples have no image cannot be "
        "encoded (pixel_values must be [batch, ...] alongside input_ids), so MamoProcessor rejects it with a "
        "ValueError (see test_pairs_of_images_need_one_text_each_while_single_images_and_texts_may_differ_in_number)."
    )
    def test_processor_text_has_no_visual(self):
        pass


# ---------------------------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------------------------


def test_images_and_text_give_pixel_values_input_ids_and_attention_mask():
    processor = make_processor()
    inputs = processor(
        images=[image(0), image(1)], text=["a dog", "a cat on the grass"], padding=True, return_tensors="pt"
    )
    assert set(inputs) == {"pixel_values", "input_ids", "attention_mask"} == set(processor.model_input_names)
    assert inputs["pixel_values"].shape == (2, 3, 32, 32)
    assert inputs["input_ids"].tolist() == [
        [CLS, *word_ids("a", "dog"), SEP, PAD, PAD, PAD],
        [CLS, *word_ids("a", "cat", "on", "the", "grass"), SEP],
    ]
    assert inputs["attention_mask"].tolist() == [[1, 1, 1, 1, 0, 0, 0], [1] * 7]


def test_image_only_and_text_only_calls():
    processor = make_processor()
    image_only = processor(images=image(), return_tensors="pt")
    assert set(image_only) == {"pixel_values"}
    torch.testing.assert_close(
        image_only["pixel_values"], processor.image_processor(image(), return_tensors="pt").pixel_values
    )
    text_only = processor(text="a dog")
    assert dict(text_only) == {"input_ids": [CLS, *word_ids("a", "dog"), SEP], "attention_mask": [1, 1, 1, 1]}
    with pytest.raises(ValueError):
        processor()


def test_token_type_ids_only_when_asked_for():
    processor = make_processor()
    assert "token_type_ids" not in processor(text="a dog", return_tensors="pt")
    inputs = processor(text="a dog", return_token_type_ids=True, return_tensors="pt")
    assert inputs["token_type_ids"].tolist() == [[0, 0, 0, 0]]


def test_truncation_honours_the_tokenizer_max_length():
    processor = make_processor(model_max_length=5)
    caption = "a dog on the grass a cat on the grass"
    truncated = processor(text=[caption], truncation=True, return_tensors="pt")
    assert truncated["input_ids"].tolist() == [[CLS, *word_ids("a", "dog", "on"), SEP]]
    # An explicit `max_length` wins; truncation is on by default, and off only when asked.
    assert processor(text=caption, truncation=True, max_length=3)["input_ids"] == [CLS, *word_ids("a"), SEP]
    assert processor(text=caption)["input_ids"] == truncated["input_ids"].tolist()[0]
    assert len(processor(text=caption, truncation=False)["input_ids"]) == 12
    # `padding="max_length"` pads to the tokenizer's maximum too.
    assert processor(text="a", padding="max_length")["input_ids"] == [CLS, *word_ids("a"), SEP, PAD, PAD]


def test_grouped_keyword_arguments_reach_their_component():
    processor = make_processor()
    inputs = processor(
        images=image(),
        text="a dog",
        text_kwargs={"padding": "max_length", "max_length": 8},
        images_kwargs={"size": {"height": 16, "width": 24}},
        return_tensors="pt",
    )
    assert inputs["input_ids"].shape == (1, 8)
    assert inputs["pixel_values"].shape == (1, 3, 16, 24)


@pytest.mark.parametrize(
    "image_processor_class",
    [
        pytest.param(
            MamoImageProcessor,
            id="torchvision",
            marks=pytest.mark.skipif(not is_torchvision_available(), reason="torchvision is not installed"),
        ),
        pytest.param(MamoImageProcessorPil, id="pil"),
    ],
)
def test_pairs_of_images_with_one_caption_each(image_processor_class):
    processor = make_processor(image_processor_class)
    pairs = [[image(0), image(1)], [image(2), image(3)], [image(4), image(5)]]
    inputs = processor(images=pairs, text=["a dog", "a cat", "the grass"], padding=True, return_tensors="pt")
    assert inputs["pixel_values"].shape == (3, 2, 3, 32, 32)
    assert inputs["input_ids"].shape == (3, 4)
    singles = processor(images=[img for pair in pairs for img in pair], return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(inputs["pixel_values"].reshape(6, 3, 32, 32), singles)


def test_pairs_of_images_need_one_text_each_while_single_images_and_texts_may_differ_in_number():
    processor = make_processor()
    inputs = processor(images=[image(0), image(1)], text=["a", "dog", "cat"], padding=True, return_tensors="pt")
    assert inputs["pixel_values"].shape[0] == 2 and inputs["input_ids"].shape[0] == 3  # N images × M texts
    with pytest.raises(ValueError, match=r"Got 1 text\(s\) and 2 pairs of images"):
        processor(images=[[image(0), image(1)], [image(2), image(3)]], text="a dog")
    with pytest.raises(ValueError, match=r"Sample 0 has no image"):
        processor(images=[[], [image(0)], [image(1)]], text=["a", "dog", "cat"])


@pytest.mark.filterwarnings("error")  # e.g. "`max_length` is ignored when `padding`=`True`..."
def test_truncation_applies_whatever_the_padding_and_warns_nothing():
    processor = make_processor()
    processor.tokenizer.model_max_length = 12
    long = " ".join(["dog"] * 50)
    for padding in (False, True, "longest", "max_length"):
        inputs = processor(images=[image(0)], text=[long], padding=padding, return_tensors="pt")
        assert inputs["input_ids"].shape == (1, 12), padding
        limited = processor(images=[image(0)], text=[long, "a dog"], padding=padding, max_length=7)
        assert len(limited["input_ids"][0]) == 7, padding
    assert len(processor(text=[long], truncation=False)["input_ids"][0]) == 52  # still the user's choice


def test_bad_images_raise_before_tokenising():
    with pytest.raises(ValueError, match=r"array of shape \(5,\)"):
        make_processor()(images=np.zeros(5, np.uint8), text="a dog")


# ---------------------------------------------------------------------------------------------------------------
# Saving and loading
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "backend, expected_class",
    [
        pytest.param(
            "torchvision",
            MamoImageProcessor,
            marks=pytest.mark.skipif(not is_torchvision_available(), reason="torchvision is not installed"),
        ),
        pytest.param("pil", MamoImageProcessorPil),
    ],
)
def test_auto_processor_round_trip(backend, expected_class, tmp_path):
    processor = make_processor(model_max_length=6)
    processor.save_pretrained(tmp_path)
    assert {"processing_mamo.py", "image_processing_mamo.py", "processor_config.json"} <= set(os.listdir(tmp_path))

    loaded = AutoProcessor.from_pretrained(tmp_path, backend=backend)
    assert type(loaded) is MamoProcessor and type(loaded.image_processor) is expected_class
    assert isinstance(loaded.tokenizer, BertTokenizer)
    assert loaded.tokenizer.get_vocab() == processor.tokenizer.get_vocab()
    assert loaded.tokenizer.model_max_length == 6
    assert loaded.image_processor.to_dict() == processor.image_processor.to_dict()

    inputs = dict(images=[image(0), image(1)], text=["a dog on the grass", "a cat"], padding=True, truncation=True)
    expected, actual = processor(**inputs, return_tensors="pt"), loaded(**inputs, return_tensors="pt")
    assert actual["input_ids"].tolist() == expected["input_ids"].tolist()
    torch.testing.assert_close(actual["pixel_values"], expected["pixel_values"], atol=4 / 255 + 1e-6, rtol=0)

    # The parts load on their own through their Auto classes too.
    assert type(AutoImageProcessor.from_pretrained(tmp_path, backend=backend)) is expected_class
    assert isinstance(AutoTokenizer.from_pretrained(tmp_path), BertTokenizer)


def test_auto_classes_are_registered_for_mamo_configs():
    from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING
    from transformers.models.auto.tokenization_auto import TOKENIZER_MAPPING

    assert PROCESSOR_MAPPING[mamo_hf.MamoConfig] is MamoProcessor
    assert TOKENIZER_MAPPING[mamo_hf.MamoConfig] is BertTokenizer
    assert IMAGE_PROCESSOR_MAPPING[mamo_hf.MamoConfig] == {
        "torchvision": MamoImageProcessor,
        "pil": MamoImageProcessorPil,
    }


def test_saved_processor_loads_as_remote_code_without_mamo_hf(tmp_path):
    """What a user without `mamo_hf` gets from a pushed folder: `trust_remote_code=True` loads the saved code (here
    with torchvision blocked, so the PIL backend is chosen) and processes images and text as the original does."""
    processor = make_processor(MamoImageProcessorPil)
    processor.save_pretrained(tmp_path / "processor")
    pair = [np.full((20, 30, 4), 0, np.uint8), np.full((20, 30), 128, np.uint8)]  # transparent RGBA, gray
    with open(tmp_path / "pair.pkl", "wb") as f:
        pickle.dump(pair, f)
    script = textwrap.dedent(
        """
        import json
        import pickle
        import sys

        sys.modules["torchvision"] = None  # `import torchvision` raises ImportError
        from transformers import AutoProcessor

        folder, pair_path = sys.argv[1:]
        processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
        with open(pair_path, "rb") as f:
            pair = pickle.load(f)
        inputs = processor(images=[pair], text=["a dog"], return_tensors="pt")
        print(json.dumps({
            "processor": type(processor).__name__,
            "image_processor": type(processor.image_processor).__name__,
            "imported_mamo_hf": "mamo_hf" in sys.modules,
            "input_ids": inputs["input_ids"].tolist(),
            "pixel_values_shape": list(inputs["pixel_values"].shape),
            "pixel_values_sum": float(inputs["pixel_values"].double().sum()),
        }))
        """
    )
    env = dict(os.environ, HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1")
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "processor"), str(tmp_path / "pair.pkl")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tempfile.gettempdir(),
    )
    assert result.returncode == 0, result.stderr
    remote = json.loads(result.stdout.strip().splitlines()[-1])
    expected = processor(images=[pair], text=["a dog"], return_tensors="pt")
    assert remote["processor"] == "MamoProcessor" and remote["image_processor"] == "MamoImageProcessorPil"
    assert remote["imported_mamo_hf"] is False
    assert remote["input_ids"] == expected["input_ids"].tolist()
    assert remote["pixel_values_shape"] == [1, 2, 3, 32, 32]
    assert remote["pixel_values_sum"] == pytest.approx(float(expected["pixel_values"].double().sum()), abs=1e-3)
