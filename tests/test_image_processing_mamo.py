"""Tests of `MamoImageProcessor` (torchvision backend) and `MamoImageProcessorPil`.

transformers' own `ImageProcessingTestMixin` runs against both backends; the tests below it pin down what MAMO adds:
every PIL mode and array/tensor layout becomes RGB with exact values, the two backends agree, pairs of images
(NLVR2) give `[batch, 2, 3, H, W]`, bad inputs raise a `ValueError` that names the problem, and processors survive
`save_pretrained` / `AutoImageProcessor.from_pretrained`, also as remote code in a process without `mamo_hf` and
without torchvision. Tests of the torchvision backend skip when torchvision is not installed.
"""

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
from hf_common_tests.test_image_processing_common import ImageProcessingTester, ImageProcessingTestMixin
from PIL import Image
from transformers import AutoImageProcessor
from transformers.utils import is_torchvision_available

import mamo_hf
from mamo_hf.image_processing_mamo import MamoImageProcessor, MamoImageProcessorPil, to_rgb_array

NEEDS_TORCHVISION = "the torchvision backend needs torchvision, which is not installed"
requires_torchvision = pytest.mark.skipif(not is_torchvision_available(), reason=NEEDS_TORCHVISION)
BACKENDS = [
    pytest.param(MamoImageProcessor, id="torchvision", marks=requires_torchvision),
    pytest.param(MamoImageProcessorPil, id="pil"),
]
# The backends resize differently (torchvision's antialiased bicubic vs PIL's), from the same 8-bit RGB. On smooth
# images they agree to one 8-bit level; at hard edges (e.g. a posterised palette image) bicubic overshoot can round
# two levels apart. Two levels are 2/255 before normalisation, 4/255 after it (std 0.5).
BACKEND_MAX_ABS_DIFF = 4 / 255 + 1e-6
BACKEND_MEAN_ABS_DIFF = 1e-3
HEIGHT, WIDTH = 6, 10  # small, and not square, so that no axis can be mistaken for a channel axis


# ---------------------------------------------------------------------------------------------------------------
# transformers' common suite
# ---------------------------------------------------------------------------------------------------------------


class MamoImageProcessingTester(ImageProcessingTester):
    """Fixtures for `ImageProcessingTestMixin`: MAMO's defaults at a small output size, and MAMO's classes (the
    mixin finds classes by the test file's folder name, which is `tests` here)."""

    def __init__(self, parent, **kwargs):
        kwargs.setdefault("size", {"height": 20, "width": 20})
        kwargs.setdefault("do_resize", True)
        kwargs.setdefault("do_normalize", True)
        kwargs.setdefault("image_mean", [0.5, 0.5, 0.5])
        kwargs.setdefault("image_std", [0.5, 0.5, 0.5])
        kwargs.setdefault("do_convert_rgb", True)
        super().__init__(parent, **kwargs)

    def _get_image_processing_classes(self):
        classes = {"torchvision": MamoImageProcessor} if is_torchvision_available() else {}
        classes["pil"] = MamoImageProcessorPil
        return classes


class MamoImageProcessingTest(ImageProcessingTestMixin, unittest.TestCase):
    image_processor_tester_class = MamoImageProcessingTester

    def setUp(self):
        super().setUp()
        np.random.seed(0)  # the mixin draws random image sizes and pixels from numpy's global generator

    def test_new_models_require_torchvision_backend(self):
        if not is_torchvision_available():
            self.skipTest(reason=f"MAMO has a torchvision backend ({NEEDS_TORCHVISION})")
        super().test_new_models_require_torchvision_backend()

    def test_pil_can_run_without_torchvision(self):
        # The mixin's version is @slow and loads the saved folder in a subprocess that never imports `mamo_hf`, so
        # it cannot find the class. This version runs by default and loads the folder as remote code (the code
        # that `register_for_auto_class` saved next to the config), in a process where torchvision cannot import.
        image_processor = MamoImageProcessorPil(**self.image_processor_dict)
        inputs = self.image_processor_tester.prepare_processor_inputs(equal_resolution=False)
        expected = image_processor(**inputs, return_tensors=None)
        outputs = run_pil_backend_without_torchvision(image_processor, inputs)
        self.assertEqual(outputs.pop("class_name"), "MamoImageProcessorPil")
        self.assertFalse(outputs.pop("imported_mamo_hf"))
        np.testing.assert_equal(outputs, expected.data)


def run_pil_backend_without_torchvision(image_processor, inputs) -> dict:
    """Save `image_processor`, load it in a fresh Python with torchvision blocked and `mamo_hf` not imported (as
    remote code, `trust_remote_code=True`, `backend="pil"`) and return its outputs on `inputs`."""
    script = textwrap.dedent(
        """
        import pickle
        import sys

        sys.modules["torchvision"] = None  # `import torchvision` raises ImportError

        from transformers import AutoImageProcessor

        folder, inputs_path, outputs_path = sys.argv[1:]
        processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True, backend="pil")
        with open(inputs_path, "rb") as f:
            inputs = pickle.load(f)
        outputs = dict(processor(**inputs, return_tensors=None).data)
        outputs["class_name"] = type(processor).__name__
        outputs["imported_mamo_hf"] = "mamo_hf" in sys.modules
        with open(outputs_path, "wb") as f:
            pickle.dump(outputs, f)
        """
    )
    with tempfile.TemporaryDirectory() as folder:
        image_processor.save_pretrained(folder)
        inputs_path, outputs_path = os.path.join(folder, "inputs.pkl"), os.path.join(folder, "outputs.pkl")
        with open(inputs_path, "wb") as f:
            pickle.dump(inputs, f)
        env = dict(os.environ, HF_MODULES_CACHE=os.path.join(folder, "modules"), HF_HUB_OFFLINE="1")
        result = subprocess.run(
            [sys.executable, "-c", script, folder, inputs_path, outputs_path],
            capture_output=True,
            text=True,
            env=env,
            cwd=folder,
        )
        assert result.returncode == 0, result.stderr
        with open(outputs_path, "rb") as f:
            return pickle.load(f)


# ---------------------------------------------------------------------------------------------------------------
# Defaults
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_defaults_match_the_vit_in21k_preprocessing_at_256(backend):
    processor = backend()
    assert dict(processor.size)["height"] == 256 and dict(processor.size)["width"] == 256
    assert processor.resample == Image.Resampling.BICUBIC
    assert tuple(processor.image_mean) == (0.5, 0.5, 0.5) and tuple(processor.image_std) == (0.5, 0.5, 0.5)
    assert processor.rescale_factor == 1 / 255
    assert processor.do_resize and processor.do_rescale and processor.do_normalize and processor.do_convert_rgb

    pixel_values = processor(Image.new("RGB", (320, 240), (255, 0, 128)), return_tensors="pt").pixel_values
    assert pixel_values.shape == (1, 3, 256, 256) and pixel_values.dtype == torch.float32
    # (value / 255 - 0.5) / 0.5: 255 -> 1, 0 -> -1, 128 -> 1/255
    torch.testing.assert_close(pixel_values[0, :, 128, 128], torch.tensor([1.0, -1.0, 1 / 255]), atol=1e-6, rtol=0)


# ---------------------------------------------------------------------------------------------------------------
# RGB conversion: exact values for every PIL mode and array layout
# ---------------------------------------------------------------------------------------------------------------


def two_pixels(mode: str, first, second) -> Image.Image:
    """A 1 x 2 PIL image of `mode` with the given two pixels."""
    image = Image.new(mode, (2, 1))
    image.putpixel((0, 0), first)
    image.putpixel((1, 0), second)
    return image


def palette_image(transparent_index=None) -> Image.Image:
    image = Image.new("P", (2, 1))
    image.putpalette([200, 100, 50, 10, 20, 30] + [0] * 762)
    image.putpixel((0, 0), 0)
    image.putpixel((1, 0), 1)
    if transparent_index is not None:
        image.info["transparency"] = transparent_index
    return image


def sixteen_bit(values) -> Image.Image:
    return Image.fromarray(np.array([values], dtype=np.uint16))


# mode, image, expected RGB of the two pixels
PIL_CASES = [
    ("1", two_pixels("1", 0, 1), [(0, 0, 0), (255, 255, 255)]),
    ("L", two_pixels("L", 128, 7), [(128, 128, 128), (7, 7, 7)]),
    ("LA opaque / transparent", two_pixels("LA", (128, 255), (7, 0)), [(128, 128, 128), (255, 255, 255)]),
    ("LA half transparent", two_pixels("LA", (0, 51), (255, 102)), [(204, 204, 204), (255, 255, 255)]),
    ("P", palette_image(), [(200, 100, 50), (10, 20, 30)]),
    ("P with a transparent index", palette_image(transparent_index=1), [(200, 100, 50), (255, 255, 255)]),
    ("RGB", two_pixels("RGB", (1, 2, 3), (250, 128, 0)), [(1, 2, 3), (250, 128, 0)]),
    ("RGBA", two_pixels("RGBA", (1, 2, 3, 255), (9, 9, 9, 0)), [(1, 2, 3), (255, 255, 255)]),
    ("RGBA half transparent", two_pixels("RGBA", (0, 100, 255, 51), (0, 0, 0, 204)), [(204, 224, 255), (51, 51, 51)]),
    ("CMYK", two_pixels("CMYK", (0, 0, 0, 0), (0, 0, 0, 255)), [(255, 255, 255), (0, 0, 0)]),
    ("I;16 full range", sixteen_bit([65535, 0]), [(255, 255, 255), (0, 0, 0)]),
    ("I;16 mid gray", sixteen_bit([128 * 257, 1000]), [(128, 128, 128), (4, 4, 4)]),
    ("I with 16-bit values", Image.fromarray(np.array([[65535, 1000]], dtype=np.int32)), [(255,) * 3, (4,) * 3]),
    ("I with 8-bit values", Image.fromarray(np.array([[255, 100]], dtype=np.int32)), [(255,) * 3, (100,) * 3]),
    ("F in [0, 1]", Image.fromarray(np.array([[0.5, 1.0]], dtype=np.float32)), [(128,) * 3, (255,) * 3]),
    ("F in [0, 255]", Image.fromarray(np.array([[200.0, 3.0]], dtype=np.float32)), [(200,) * 3, (3,) * 3]),
]


@pytest.mark.parametrize("image, expected", [case[1:] for case in PIL_CASES], ids=[case[0] for case in PIL_CASES])
def test_every_pil_mode_becomes_8_bit_rgb(image, expected):
    rgb = to_rgb_array(image)
    assert rgb.shape == (1, 2, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[0], np.array(expected, dtype=np.uint8))


def test_pil_cases_have_the_modes_they_name():
    # Pillow picks modes from the array dtype: make sure the cases above really cover I;16, I and F.
    modes = {name: image.mode for name, image, _ in PIL_CASES}
    assert modes["I;16 full range"] == "I;16"
    assert modes["I with 16-bit values"] == "I" and modes["F in [0, 1]"] == "F"
    assert modes["LA opaque / transparent"] == "LA" and modes["CMYK"] == "CMYK"


def gray_hw(value, dtype=np.uint8):
    return np.full((HEIGHT, WIDTH), value, dtype=dtype)


def rgba_hw4(alpha, dtype=np.uint8, color=10):
    return np.concatenate([np.full((HEIGHT, WIDTH, 3), color, dtype), np.full((HEIGHT, WIDTH, 1), alpha, dtype)], -1)


# layout, array (numpy, channels as named), expected RGB of every pixel
ARRAY_CASES = [
    ("HxW uint8", gray_hw(128), (128, 128, 128)),
    ("HxWx1 uint8", gray_hw(128)[..., None], (128, 128, 128)),
    ("1xHxW uint8", gray_hw(128)[None], (128, 128, 128)),
    ("HxWx2 gray + transparent alpha", np.stack([gray_hw(7), gray_hw(0)], -1), (255, 255, 255)),
    ("HxWx3 uint8", np.broadcast_to(np.array([1, 2, 3], np.uint8), (HEIGHT, WIDTH, 3)).copy(), (1, 2, 3)),
    (
        "3xHxW uint8",
        np.broadcast_to(np.array([1, 2, 3], np.uint8)[:, None, None], (3, HEIGHT, WIDTH)).copy(),
        (1, 2, 3),
    ),
    ("HxWx4 transparent", rgba_hw4(0), (255, 255, 255)),
    ("HxWx4 opaque", rgba_hw4(255), (10, 10, 10)),
    ("4xHxW transparent", np.moveaxis(rgba_hw4(0), -1, 0).copy(), (255, 255, 255)),
    ("HxW float in [0, 1]", gray_hw(0.5, np.float32), (128, 128, 128)),
    ("HxWx3 float in [0, 1]", np.full((HEIGHT, WIDTH, 3), 0.2, np.float32), (51, 51, 51)),
    ("3xHxW float in [0, 1]", np.full((3, HEIGHT, WIDTH), 1.0, np.float64), (255, 255, 255)),
    ("HxWx4 float transparent", rgba_hw4(0.0, np.float32, color=0.0), (255, 255, 255)),
    ("HxWx3 float in [0, 255]", np.full((HEIGHT, WIDTH, 3), 128.0, np.float32), (128, 128, 128)),
    ("HxW uint16", gray_hw(65535, np.uint16), (255, 255, 255)),
    ("HxW int64 8-bit values", gray_hw(128, np.int64), (128, 128, 128)),
    ("HxW bool", gray_hw(True, np.bool_), (255, 255, 255)),
]


@pytest.mark.parametrize("as_tensor", [False, True], ids=["numpy", "torch"])
@pytest.mark.parametrize("array, expected", [case[1:] for case in ARRAY_CASES], ids=[case[0] for case in ARRAY_CASES])
def test_every_array_layout_becomes_8_bit_rgb(array, expected, as_tensor):
    image = torch.from_numpy(array) if as_tensor else array
    rgb = to_rgb_array(image)
    assert rgb.shape == (HEIGHT, WIDTH, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb, np.broadcast_to(np.array(expected, np.uint8), (HEIGHT, WIDTH, 3)))


def test_bfloat16_tensors_are_read_like_float32():
    image = torch.full((3, HEIGHT, WIDTH), 0.5, dtype=torch.bfloat16)
    np.testing.assert_array_equal(to_rgb_array(image), np.full((HEIGHT, WIDTH, 3), 128, np.uint8))


def test_channel_axis_of_small_images():
    # Both end axes could be channels: the smaller one is; on a tie, the first one (transformers' convention).
    assert to_rgb_array(np.zeros((4, 4, 3), np.uint8)).shape == (4, 4, 3)
    assert to_rgb_array(np.zeros((3, 4, 4), np.uint8)).shape == (4, 4, 3)
    assert to_rgb_array(np.zeros((3, 5, 3), np.uint8)).shape == (5, 3, 3)
    # An explicit `input_data_format` wins.
    assert to_rgb_array(np.zeros((3, 5, 3), np.uint8), input_data_format="channels_last").shape == (3, 5, 3)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "image, expected",
    [
        (two_pixels("L", 128, 128), 128),
        (Image.new("RGBA", (2, 1), (0, 0, 0, 0)), 255),
        (sixteen_bit([65535, 65535]), 255),
        (sixteen_bit([128 * 257, 128 * 257]), 128),
        (Image.fromarray(np.full((1, 2), 0.5, np.float32)), 128),
        (np.full((HEIGHT, WIDTH), 128, np.uint8), 128),
        (torch.full((3, HEIGHT, WIDTH), 0.5), 128),
        (np.full((HEIGHT, WIDTH, 4), 0.0, np.float32), 255),
    ],
    ids=["L", "RGBA transparent", "I;16 white", "I;16 gray", "F", "HxW array", "float tensor", "float RGBA array"],
)
def test_processors_rescale_the_converted_rgb(backend, image, expected):
    """Through the whole pipeline, before normalisation: pixel_values * 255 is the 8-bit RGB value."""
    processor = backend(do_resize=False, do_normalize=False)
    pixel_values = processor(image, return_tensors="pt").pixel_values
    assert pixel_values.shape[:2] == (1, 3)
    torch.testing.assert_close(pixel_values * 255, torch.full_like(pixel_values, expected), atol=1e-4, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_without_rescaling_float_inputs_keep_their_scale(backend):
    # `do_rescale=False` says the pixels are already on the model's scale: a float image in [0, 1] stays there.
    processor = backend(do_resize=False, do_rescale=False, do_normalize=False)
    pixel_values = processor(np.full((HEIGHT, WIDTH, 1), 0.25, np.float32), return_tensors="pt").pixel_values
    torch.testing.assert_close(pixel_values, torch.full((1, 3, HEIGHT, WIDTH), 0.25))


@pytest.mark.parametrize("backend", BACKENDS)
def test_without_rgb_conversion_channels_are_kept(backend):
    processor = backend(do_resize=False, do_normalize=False, do_convert_rgb=False)
    pixel_values = processor(np.zeros((HEIGHT, WIDTH, 4), np.uint8), return_tensors="pt").pixel_values
    assert pixel_values.shape == (1, 4, HEIGHT, WIDTH)


@pytest.mark.parametrize("backend", BACKENDS)
def test_paths_keep_their_alpha_channel_and_bit_depth(backend, tmp_path):
    # transformers' `load_image` converts files to RGB, dropping alpha; MAMO reads them in their own mode.
    transparent = tmp_path / "transparent.png"
    Image.new("RGBA", (WIDTH, HEIGHT), (0, 0, 0, 0)).save(transparent)
    sixteen = tmp_path / "sixteen.png"
    Image.fromarray(np.full((HEIGHT, WIDTH), 65535, np.uint16)).save(sixteen)

    processor = backend(do_resize=False, do_normalize=False)
    pixel_values = processor([str(transparent), str(sixteen)], return_tensors="pt").pixel_values
    torch.testing.assert_close(pixel_values, torch.ones(2, 3, HEIGHT, WIDTH))


# ---------------------------------------------------------------------------------------------------------------
# The two backends agree
# ---------------------------------------------------------------------------------------------------------------


def photo_like(height=300, width=400, seed=0) -> np.ndarray:
    """Smooth gradients and waves with sensor-like noise: an 8-bit RGB (H, W, 3) array."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x / width * 255, y / height * 255, 128 + 100 * np.sin(x / 17) * np.cos(y / 23)], -1)
    return np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)


def same_image_in_many_formats(rgb: np.ndarray) -> dict:
    return {
        "PIL RGB": Image.fromarray(rgb),
        "PIL RGBA opaque": Image.fromarray(rgb).convert("RGBA"),
        "numpy HxWx3": rgb,
        "numpy 3xHxW": np.moveaxis(rgb, -1, 0).copy(),
        "torch 3xHxW": torch.from_numpy(np.moveaxis(rgb, -1, 0).copy()),
        "torch float 3xHxW in [0, 1]": torch.from_numpy(np.moveaxis(rgb, -1, 0).copy()).float() / 255,
        "numpy float HxWx3 in [0, 255]": rgb.astype(np.float32),
    }


@requires_torchvision
def test_backends_agree_on_every_input_format():
    images = same_image_in_many_formats(photo_like())
    torchvision_processor, pil_processor = MamoImageProcessor(), MamoImageProcessorPil()
    reference = torchvision_processor(images["PIL RGB"], return_tensors="pt").pixel_values
    for name, image in images.items():
        for processor in (torchvision_processor, pil_processor):
            pixel_values = processor(image, return_tensors="pt").pixel_values
            difference = (pixel_values - reference).abs()
            label = f"{name} through {type(processor).__name__}"
            assert difference.max() <= BACKEND_MAX_ABS_DIFF, label
            assert difference.mean() <= BACKEND_MEAN_ABS_DIFF, label


@requires_torchvision
def test_backends_agree_on_gray_transparent_and_16_bit_images():
    rgb = photo_like(seed=1)
    gray = rgb[..., 0]
    rgba = np.concatenate([rgb, (gray // 2)[..., None]], -1)  # varied alpha
    images = [
        Image.fromarray(gray),
        Image.fromarray(rgba),
        Image.fromarray(gray.astype(np.uint16) * 257),
        Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE),
        Image.fromarray(rgb).convert("CMYK"),
    ]
    torchvision_output = MamoImageProcessor()(images, return_tensors="pt").pixel_values
    pil_output = MamoImageProcessorPil()(images, return_tensors="pt").pixel_values
    difference = (torchvision_output - pil_output).abs()
    assert difference.max() <= BACKEND_MAX_ABS_DIFF
    assert difference.mean() <= BACKEND_MEAN_ABS_DIFF


@requires_torchvision
def test_backends_are_identical_without_resizing():
    images = list(same_image_in_many_formats(photo_like(60, 80)).values())
    torchvision_output = MamoImageProcessor(do_resize=False)(images, return_tensors="pt").pixel_values
    pil_output = MamoImageProcessorPil(do_resize=False)(images, return_tensors="pt").pixel_values
    torch.testing.assert_close(torchvision_output, pil_output, atol=1e-6, rtol=0)


# ---------------------------------------------------------------------------------------------------------------
# Pairs of images (NLVR2)
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_pairs_give_batch_by_two_and_equal_the_single_images(backend):
    processor = backend(size={"height": 32, "width": 48})
    images = [Image.fromarray(photo_like(40 + 10 * i, 50, seed=i)) for i in range(6)]
    pairs = [images[0:2], tuple(images[2:4]), images[4:6]]

    pixel_values = processor(pairs, return_tensors="pt").pixel_values
    assert pixel_values.shape == (3, 2, 3, 32, 48)
    singles = processor(images, return_tensors="pt").pixel_values
    assert singles.shape == (6, 3, 32, 48)
    torch.testing.assert_close(pixel_values.reshape(6, 3, 32, 48), singles)
    for index, image in enumerate(images):
        alone = processor(image, return_tensors="pt").pixel_values[0]
        torch.testing.assert_close(pixel_values[index // 2, index % 2], alone)


@pytest.mark.parametrize("backend", BACKENDS)
def test_pairs_in_every_output_format(backend):
    processor = backend(size={"height": 8, "width": 8})
    pairs = [[np.full((HEIGHT, WIDTH, 3), 10 * i, np.uint8) for i in range(j, j + 2)] for j in (0, 2)]

    as_numpy = processor(pairs, return_tensors="np").pixel_values
    assert isinstance(as_numpy, np.ndarray) and as_numpy.shape == (2, 2, 3, 8, 8)
    as_lists = processor(pairs).pixel_values
    assert len(as_lists) == 2 and tuple(as_lists[0].shape) == (2, 3, 8, 8)
    # A [batch, 2, C, H, W] array is a batch of pairs too.
    stacked = torch.from_numpy(np.stack([np.stack([np.moveaxis(image, -1, 0) for image in pair]) for pair in pairs]))
    np.testing.assert_allclose(processor(stacked, return_tensors="np").pixel_values, as_numpy, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_image_per_sample_nested_lists_are_flattened(backend):
    # transformers' nested convention (one list per sample) with one image each is a plain batch.
    processor = backend(size={"height": 8, "width": 8})
    image = Image.new("RGB", (WIDTH, HEIGHT))
    assert processor([[image], [image], [image]], return_tensors="pt").pixel_values.shape == (3, 3, 8, 8)


# ---------------------------------------------------------------------------------------------------------------
# Bad inputs
# ---------------------------------------------------------------------------------------------------------------

BAD_INPUTS = [
    ("1-D array", np.zeros(5, np.uint8), r"array of shape \(5,\)"),
    ("5 channels last", np.zeros((HEIGHT, WIDTH, 5), np.uint8), r"channel axis of an image of shape \(6, 10, 5\)"),
    ("5 channels first", torch.zeros(5, HEIGHT, WIDTH), r"channel axis of an image of shape \(5, 6, 10\)"),
    ("6-D array", np.zeros((1, 1, 1, HEIGHT, WIDTH, 3), np.uint8), r"array of shape \(1, 1, 1, 6, 10, 3\)"),
    ("not an image", 3, r"Cannot read images from a builtins.int"),
    ("not an image in a list", [Image.new("RGB", (4, 4)), None], r"builtins.NoneType"),
    ("empty list", [], r"empty list of images"),
    ("groups of mixed sizes", [[Image.new("RGB", (4, 4))] * 2, [Image.new("RGB", (4, 4))]], r"sizes \[2, 1\]"),
    ("three images per sample", [[Image.new("RGB", (4, 4))] * 3], r"sizes \[3\]"),
    ("images and lists mixed", [Image.new("RGB", (4, 4)), [Image.new("RGB", (4, 4))]], r"not both"),
    (
        "float above 255",
        np.full((HEIGHT, WIDTH, 3), 300.0, np.float32),
        r"float image with values in \[300.0, 300.0\]",
    ),
    ("negative integers", np.full((HEIGHT, WIDTH), -1, np.int32), r"integer image with values in \[-1, -1\]"),
    ("NaN", np.full((HEIGHT, WIDTH), np.nan, np.float32), r"NaN or infinity"),
    ("empty image", np.zeros((0, WIDTH, 3), np.uint8), r"empty image"),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("images, message", [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS])
def test_bad_inputs_raise_a_value_error_that_names_the_problem(backend, images, message):
    with pytest.raises(ValueError, match=message):
        backend()(images, return_tensors="pt")


# ---------------------------------------------------------------------------------------------------------------
# Saving and loading
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("saved_backend", BACKENDS)
@pytest.mark.parametrize(
    "requested, expected_class",
    [
        pytest.param("torchvision", MamoImageProcessor, id="load-torchvision", marks=requires_torchvision),
        pytest.param("pil", MamoImageProcessorPil, id="load-pil"),
    ],
)
def test_auto_image_processor_round_trip_chooses_the_backend(saved_backend, requested, expected_class, tmp_path):
    assert "mamo_hf" in sys.modules  # the import registered the classes with AutoImageProcessor
    original = saved_backend(size={"height": 64, "width": 96}, do_normalize=False)
    original.save_pretrained(tmp_path)
    loaded = AutoImageProcessor.from_pretrained(tmp_path, backend=requested)
    assert type(loaded) is expected_class
    assert loaded.to_dict() == original.to_dict()

    # The folder carries the code, and its auto_map names both backends for remote-code users.
    assert (tmp_path / "image_processing_mamo.py").is_file()
    assert loaded.to_dict()["auto_map"]["AutoImageProcessor"] == {
        "torchvision": "image_processing_mamo.MamoImageProcessor",
        "pil": "image_processing_mamo.MamoImageProcessorPil",
    }
    image = Image.fromarray(photo_like(50, 70))
    torch.testing.assert_close(
        loaded(image, return_tensors="pt").pixel_values,
        original(image, return_tensors="pt").pixel_values,
        atol=BACKEND_MAX_ABS_DIFF,
        rtol=0,
    )


def test_default_backend_follows_torchvision_availability(tmp_path):
    MamoImageProcessorPil().save_pretrained(tmp_path)
    expected = MamoImageProcessor if is_torchvision_available() else MamoImageProcessorPil
    assert type(AutoImageProcessor.from_pretrained(tmp_path)) is expected


@pytest.mark.skipif(is_torchvision_available(), reason="checks the error raised when torchvision is missing")
def test_torchvision_backend_without_torchvision_says_what_is_missing():
    with pytest.raises(ImportError, match="(?i)requires the torchvision library"):
        MamoImageProcessor()


def test_package_exports_the_processors():
    assert mamo_hf.MamoImageProcessor is MamoImageProcessor
    assert mamo_hf.MamoImageProcessorPil is MamoImageProcessorPil
    assert {"MamoImageProcessor", "MamoImageProcessorPil", "MamoProcessor"} <= set(mamo_hf.__all__)
