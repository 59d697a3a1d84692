# Copyright 2026 The mamo_hf authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Image processors for MAMO: `MamoImageProcessor` (torchvision backend) and `MamoImageProcessorPil` (PIL backend).

Both resize to 256 x 256 (bicubic), rescale by 1/255 and normalise with mean = std = 0.5 per channel, the
preprocessing of the ViT-B/16 image encoder that MAMO starts from (`google/vit-base-patch16-224-in21k`). Training
augmentation (random crops, flips, RandAugment) belongs in the dataset transform, not here.

Two things differ from the plain transformers backends, and both backends share them through
`MamoImageProcessingMixin`:

- **Any image becomes RGB.** `to_rgb_array` turns every PIL mode, array layout and bit depth into an 8-bit RGB
  array; transformers' own `convert_to_rgb` clips 16-bit and 32-bit PIL images to white and float PIL images to
  black, rejects `(H, W)` arrays, and leaves float arrays in [0, 1] on a scale that `rescale_factor=1/255` then
  crushes to black.
- **Image pairs.** NLVR2 gives two images per sample: a list of pairs gives `pixel_values` of shape
  `[batch, 2, channels, height, width]`.

Neither this module nor the PIL backend imports torchvision: `MamoImageProcessorPil` works without it.
"""

import os

import numpy as np
import PIL.Image
import PIL.ImageOps
from transformers.image_processing_backends import PilBackend, TorchvisionBackend
from transformers.image_processing_base import BatchFeature
from transformers.image_utils import (
    IMAGENET_STANDARD_MEAN,
    IMAGENET_STANDARD_STD,
    ChannelDimension,
    PILImageResampling,
    is_pil_image,
    load_image,
)
from transformers.utils import is_torch_available, is_torch_tensor, requires_backends

if is_torch_available():
    import torch

# PIL modes whose pixels `np.array` returns as they are: (H, W) or (H, W, C) with C in 2, 3, 4.
_PIL_MODES_READ_AS_ARRAYS = {"L", "LA", "RGB", "RGBA", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"}
# Other PIL modes and the mode they are converted to before being read (anything else is converted to RGB).
_PIL_MODE_CONVERSIONS = {"1": "L", "La": "LA", "PA": "RGBA", "RGBa": "RGBA"}
_CHANNEL_COUNTS = (1, 2, 3, 4)  # gray, gray + alpha, RGB, RGBA
_LAYOUT_HELP = (
    "An image is (height, width), (height, width, channels) or (channels, height, width), with 1 (gray), "
    "2 (gray + alpha), 3 (RGB) or 4 (RGBA) channels."
)


# ---------------------------------------------------------------------------------------------------------------
# RGB conversion, shared by both backends
# ---------------------------------------------------------------------------------------------------------------


def to_rgb_array(
    image,
    input_data_format: str | ChannelDimension | None = None,
    keep_float_scale: bool = False,
) -> np.ndarray:
    """Convert one image of any common format to an RGB array of shape (height, width, 3).

    Accepted inputs:

    - a `PIL.Image.Image` of any mode: `1`, `L`, `LA`, `P` (with or without a transparent colour), `PA`, `RGB`,
      `RGBA`, `CMYK`, `YCbCr`, `I;16` and its byte orders, `I`, `F`, ...;
    - a numpy array or a torch tensor of shape `(H, W)`, `(H, W, C)` or `(C, H, W)` with `C` in 1 (gray),
      2 (gray + alpha), 3 (RGB) or 4 (RGBA). The channel axis is `input_data_format` when given, otherwise the
      axis (first or last) whose size is a channel count; when both are, the smaller one, and on a tie the first
      one (transformers' convention). Tensors may live on any device and have any dtype.

    Channels: gray is repeated into R, G and B. **Alpha is composited on white**: a pixel of colour `c` and opacity
    `a` in [0, 1] becomes `a * c + (1 - a) * white`, so a fully transparent pixel is white whatever its colour.

    Value scale: the result is `uint8` (0-255), the scale that `rescale_factor=1/255` expects:

    - 8-bit inputs (`uint8`, most PIL modes) keep their values;
    - 16-bit inputs (`uint16` arrays, PIL `I;16`) are divided by 257, which maps 0-65535 onto 0-255;
    - other integer inputs (`int16`/`int32`/`int64` arrays, PIL `I`) keep their values if they all lie in 0-255
      and are read as 16-bit otherwise;
    - float inputs (float arrays and tensors, PIL `F`) whose values all lie in [0, 1] are intensities and are
      multiplied by 255 (the convention of torchvision's `ToTensor`); float inputs with larger values are read on
      the 0-255 scale.

    With `keep_float_scale=True` (the image processors pass it when `do_rescale=False`, i.e. when the caller's
    pixels are already on the scale the model wants) float inputs keep their values and their float dtype; only
    the channels are converted, with white being 1.0 for values in [0, 1] and 255 otherwise.

    Args:
        image (`PIL.Image.Image`, `np.ndarray` or `torch.Tensor`):
            The image.
        input_data_format (`str` or `ChannelDimension`, *optional*):
            Where the channel axis of a 3-dimensional array or tensor is; inferred when not given.
        keep_float_scale (`bool`, *optional*, defaults to `False`):
            Keep float inputs on their own scale instead of converting them to 8 bits.

    Returns:
        `np.ndarray`: a C-contiguous array of shape (height, width, 3), `uint8` unless `keep_float_scale` kept a
        float input.

    Raises:
        ValueError: if the input is not an image: not a PIL image, array or tensor; an array with other than 2 or
            3 dimensions, an empty one, or one with no axis of 1 to 4 channels; negative or non-finite values;
            integers above 65535; floats above 255.
    """
    if is_pil_image(image):
        array, input_data_format = _pil_to_array(image), ChannelDimension.LAST
    elif is_torch_tensor(image):
        array = _tensor_to_array(image)
    elif isinstance(image, np.ndarray):
        array = image
    else:
        raise ValueError(
            f"Cannot read an image from a {type(image).__module__}.{type(image).__qualname__}: expected a "
            "PIL.Image.Image, a numpy array or a torch tensor."
        )

    array = _to_channels_last(array, input_data_format)
    if keep_float_scale and np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float32, copy=False)
        white = 1.0 if array.size == 0 or float(array.max()) <= 1.0 else 255.0
    else:
        array, white = _to_8_bit(array), 255.0
    return np.ascontiguousarray(_composite_on_white(array, white))


def _pil_to_array(image: "PIL.Image.Image") -> np.ndarray:
    """Read a PIL image as (H, W) or (H, W, C) pixels, keeping its bit depth and its alpha channel."""
    mode = image.mode
    if "transparency" in image.info and mode in ("L", "RGB", "P"):
        # A transparent colour (PNG tRNS chunk) becomes a real alpha channel, composited on white later.
        return np.array(image.convert("RGBA"))
    if mode in _PIL_MODES_READ_AS_ARRAYS:
        return np.array(image)
    return np.array(image.convert(_PIL_MODE_CONVERSIONS.get(mode, "RGB")))


def _tensor_to_array(image: "torch.Tensor") -> np.ndarray:
    image = image.detach().cpu()
    if image.is_floating_point() and image.dtype != torch.float64:
        image = image.to(torch.float32)  # numpy has no bfloat16
    return image.numpy()


def _to_channels_last(array: np.ndarray, input_data_format: str | ChannelDimension | None) -> np.ndarray:
    """(H, W), (H, W, C) or (C, H, W) → (H, W, C) with C in 1-4, or a ValueError that names the shape."""
    if array.ndim == 2:
        array = array[..., None]
    elif array.ndim == 3:
        if input_data_format is None:
            input_data_format = _infer_channel_axis(array.shape)
        if ChannelDimension(input_data_format) == ChannelDimension.FIRST:
            array = np.moveaxis(array, 0, -1)
    else:
        raise ValueError(
            f"Cannot read an image from an array of shape {tuple(array.shape)} ({array.ndim} dimensions). "
            f"{_LAYOUT_HELP}"
        )
    if array.shape[-1] not in _CHANNEL_COUNTS:
        raise ValueError(
            f"Cannot read an image with {array.shape[-1]} channels (array of shape {tuple(array.shape)} in "
            f"channels-last order). {_LAYOUT_HELP}"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"Cannot read an empty image (height x width = {array.shape[0]} x {array.shape[1]}).")
    return array


def _infer_channel_axis(shape: tuple[int, ...]) -> ChannelDimension:
    first, last = shape[0] in _CHANNEL_COUNTS, shape[-1] in _CHANNEL_COUNTS
    if first and last:
        return ChannelDimension.LAST if shape[-1] < shape[0] else ChannelDimension.FIRST
    if first or last:
        return ChannelDimension.FIRST if first else ChannelDimension.LAST
    raise ValueError(
        f"Cannot find the channel axis of an image of shape {tuple(shape)}: neither its first nor its last axis "
        f"has 1 to 4 entries. {_LAYOUT_HELP}"
    )


def _to_8_bit(array: np.ndarray) -> np.ndarray:
    """Map pixel values onto 0-255 (uint8) according to their type and range (see `to_rgb_array`)."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.floating):
        low, high = float(array.min()), float(array.max())
        if not (np.isfinite(low) and np.isfinite(high)):
            raise ValueError("Cannot read an image whose pixel values include NaN or infinity.")
        if low < 0.0 or high > 255.0:
            raise ValueError(
                f"Cannot read a float image with values in [{low}, {high}]: float pixels must lie in [0, 1] or "
                "in [0, 255]. If the image is already normalised, pass `do_rescale=False` (and `do_normalize=False`)."
            )
        scale = 255.0 if high <= 1.0 else 1.0
        return np.round(array.astype(np.float32) * scale).astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 65535:
            raise ValueError(
                f"Cannot read an integer image with values in [{low}, {high}]: pixels must lie in 0-255 (8-bit) "
                "or 0-65535 (16-bit)."
            )
        is_16_bit = (array.dtype.kind == "u" and array.dtype.itemsize == 2) or high > 255
        if is_16_bit:
            return np.round(array.astype(np.float32) / 257.0).astype(np.uint8)
        return array.astype(np.uint8)
    raise ValueError(f"Cannot read an image with pixels of type {array.dtype}.")


def _composite_on_white(array: np.ndarray, white: float) -> np.ndarray:
    """(H, W, C) with C in 1-4 → (H, W, 3): gray repeated, alpha composited on `white`."""
    channels = array.shape[-1]
    if channels in (2, 4):
        color, alpha = array[..., :-1].astype(np.float32), array[..., -1:].astype(np.float32) / white
        blended = color * alpha + white * (1.0 - alpha)
        array = np.round(blended).astype(array.dtype) if array.dtype == np.uint8 else blended.astype(array.dtype)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return array


# ---------------------------------------------------------------------------------------------------------------
# Batches and pairs
# ---------------------------------------------------------------------------------------------------------------


def flatten_images(images) -> tuple[list, bool]:
    """Flatten the `images` argument of an image processor into a list of single images.

    Accepted structures (after paths and URLs have been loaded):

    - one image: a PIL image, or an array/tensor of 2 or 3 dimensions;
    - a batch: a list or tuple of images, or an array/tensor of 4 dimensions (batch first); lists may also hold
      4-dimensional batches, which are flattened (transformers' convention);
    - a batch of pairs (NLVR2): a list of lists or tuples of **two** images each, or an array/tensor of shape
      `[batch, 2, ...]` with 5 dimensions;
    - a list of lists of at most one image each (transformers' nested convention, one list per sample): flattened.

    Returns:
        `tuple[list, bool]`: the single images in order (a pair contributes its two images one after the other),
        and whether the input was a batch of pairs.

    Raises:
        ValueError: for an empty batch, nested lists of other sizes, lists that mix images and lists, and anything
            that is not an image.
    """
    if is_pil_image(images):
        return [images], False
    if _is_array(images):
        if images.ndim in (2, 3):
            return [images], False
        if images.ndim == 4:
            return list(images), False
        if images.ndim == 5 and images.shape[1] == 2:
            return [image for pair in images for image in pair], True
        raise ValueError(
            f"Cannot read images from an array of shape {tuple(images.shape)}: expected one image (2 or 3 "
            "dimensions), a batch (4 dimensions, batch first) or a batch of pairs (5 dimensions, [batch, 2, ...])."
        )
    if not isinstance(images, (list, tuple)):
        raise ValueError(
            f"Cannot read images from a {type(images).__module__}.{type(images).__qualname__}: expected a PIL "
            "image, a numpy array, a torch tensor, a path or URL, or a list of them."
        )
    if len(images) == 0:
        raise ValueError("Got an empty list of images.")

    if all(isinstance(group, (list, tuple)) for group in images):
        sizes = [len(group) for group in images]
        if all(size == 2 for size in sizes):
            return [_single_image(image) for pair in images for image in pair], True
        if all(size <= 1 for size in sizes):
            return [_single_image(image) for group in images for image in group], False
        raise ValueError(
            "Nested lists of images must hold pairs (two images per sample, as in NLVR2) or one image per sample; "
            f"got groups of sizes {sizes}."
        )
    if any(isinstance(image, (list, tuple)) for image in images):
        raise ValueError(
            "A list of images must hold either images or lists of images (pairs), not both: got "
            f"{[type(image).__name__ for image in images]}."
        )
    flat = []
    for image in images:
        if _is_array(image) and image.ndim == 4:
            flat.extend(image)
        else:
            flat.append(_single_image(image))
    return flat, False


def _is_array(value) -> bool:
    return isinstance(value, np.ndarray) or is_torch_tensor(value)


def _single_image(image):
    if is_pil_image(image) or (_is_array(image) and image.ndim in (2, 3)):
        return image
    if _is_array(image):
        raise ValueError(
            f"Cannot read an image from an array of shape {tuple(image.shape)} ({image.ndim} dimensions). "
            f"{_LAYOUT_HELP}"
        )
    raise ValueError(
        f"Cannot read an image from a {type(image).__module__}.{type(image).__qualname__}: expected a "
        "PIL.Image.Image, a numpy array or a torch tensor."
    )


def _group_in_pairs(pixel_values):
    """[2 * batch, ...] (stacked, or a list of per-image arrays) → [batch, 2, ...] (or a list of [2, ...])."""
    if _is_array(pixel_values):
        return pixel_values.reshape(-1, 2, *pixel_values.shape[1:])
    stack = torch.stack if is_torch_tensor(pixel_values[0]) else np.stack
    return [stack(pixel_values[index : index + 2]) for index in range(0, len(pixel_values), 2)]


def load_image_keeping_mode(source: str) -> "PIL.Image.Image":
    """Load a path with PIL, upright (EXIF orientation applied) but in its own mode, so that `to_rgb_array` sees its
    alpha channel and bit depth. URLs and base64 strings go through transformers' `load_image` (which converts to
    RGB, dropping alpha)."""
    if os.path.isfile(source):
        with PIL.Image.open(source) as opened:
            opened.load()
            return PIL.ImageOps.exif_transpose(opened)
    return load_image(source)


# ---------------------------------------------------------------------------------------------------------------
# The image processors
# ---------------------------------------------------------------------------------------------------------------


class MamoImageProcessingMixin:
    """What both MAMO backends share: defaults, loading, RGB conversion and image pairs.

    A backend class lists this mixin before its transformers backend and implements `_from_rgb_array`, which
    turns the (height, width, 3) array of `to_rgb_array` into the backend's channels-first working format.
    """

    resample = PILImageResampling.BICUBIC
    image_mean = IMAGENET_STANDARD_MEAN
    image_std = IMAGENET_STANDARD_STD
    size = {"height": 256, "width": 256}
    default_to_square = True
    do_resize = True
    do_rescale = True
    rescale_factor = 1 / 255
    do_normalize = True
    do_convert_rgb = True

    def fetch_images(self, image_url_or_urls):
        """Load paths and URLs (at any depth of nesting) with PIL, leave images as they are."""
        if isinstance(image_url_or_urls, (list, tuple)):
            return [self.fetch_images(item) for item in image_url_or_urls]
        if isinstance(image_url_or_urls, str):
            return load_image_keeping_mode(image_url_or_urls)
        return image_url_or_urls

    def _prepare_images_structure(self, images, expected_ndims: int = 3) -> list:
        return flatten_images(self.fetch_images(images))[0]

    def _preprocess_image_like_inputs(self, images, *args, **kwargs) -> BatchFeature:
        images, are_pairs = flatten_images(self.fetch_images(images))
        features = super()._preprocess_image_like_inputs(images, *args, **kwargs)
        if are_pairs:
            features["pixel_values"] = _group_in_pairs(features["pixel_values"])
        return features

    def process_image(self, image, do_convert_rgb: bool | None = None, input_data_format=None, **kwargs):
        """Convert one input image to the backend's channels-first format, in RGB when `do_convert_rgb` is set
        (see `to_rgb_array`); without it, transformers' handling applies."""
        if not do_convert_rgb:
            return super().process_image(
                image, do_convert_rgb=do_convert_rgb, input_data_format=input_data_format, **kwargs
            )
        rgb = to_rgb_array(image, input_data_format=input_data_format, keep_float_scale=not kwargs.get("do_rescale"))
        return self._from_rgb_array(rgb, source=image, **kwargs)

    def _from_rgb_array(self, rgb: np.ndarray, source, **kwargs):
        raise NotImplementedError

    def to_dict(self) -> dict:
        """Serialise the processor; when saved with its code (`register_for_auto_class`), the `auto_map` names both
        backends, so that `AutoImageProcessor.from_pretrained(..., trust_remote_code=True, backend=...)` picks the
        class of the requested backend."""
        output = super().to_dict()
        auto_map = output.get("auto_map")
        if isinstance(auto_map, dict) and "AutoImageProcessor" in auto_map:
            module = type(self).__module__.rsplit(".", 1)[-1]
            auto_map["AutoImageProcessor"] = {
                "torchvision": f"{module}.MamoImageProcessor",
                "pil": f"{module}.MamoImageProcessorPil",
            }
        return output


class MamoImageProcessor(MamoImageProcessingMixin, TorchvisionBackend):
    r"""
    MAMO image processor, torchvision backend (batched, runs on CPU or GPU tensors).

    Every input is first converted to 8-bit RGB by `to_rgb_array` (any PIL mode, `(H, W)`, `(H, W, C)` or
    `(C, H, W)` arrays and tensors, 8-bit, 16-bit or float pixels; alpha composited on white), then resized,
    rescaled and normalised. A list of pairs of images (NLVR2) gives `pixel_values` of shape
    `[batch, 2, 3, height, width]`; any other batch gives `[batch, 3, height, width]`. Requires torchvision; use
    `MamoImageProcessorPil` (or `AutoImageProcessor.from_pretrained(..., backend="pil")`) without it.

    Args:
        do_resize (`bool`, *optional*, defaults to `True`):
            Whether to resize images to `size`.
        size (`dict[str, int]`, *optional*, defaults to `{"height": 256, "width": 256}`):
            Output size. MAMO-base is pre-trained at 256 x 256 (16 x 16 patches of 16 pixels).
        resample (`PILImageResampling`, *optional*, defaults to `PILImageResampling.BICUBIC`):
            Resampling filter of the resize.
        do_rescale (`bool`, *optional*, defaults to `True`):
            Whether to multiply pixel values by `rescale_factor`. With `False`, float inputs keep their own scale.
        rescale_factor (`float`, *optional*, defaults to `1/255`):
            Rescale factor; 1/255 maps the 8-bit RGB of `to_rgb_array` onto [0, 1].
        do_normalize (`bool`, *optional*, defaults to `True`):
            Whether to normalise with `image_mean` and `image_std`.
        image_mean (`list[float]`, *optional*, defaults to `[0.5, 0.5, 0.5]`):
            Per-channel mean (`IMAGENET_STANDARD_MEAN`, as for `google/vit-base-patch16-224-in21k`).
        image_std (`list[float]`, *optional*, defaults to `[0.5, 0.5, 0.5]`):
            Per-channel standard deviation (`IMAGENET_STANDARD_STD`).
        do_convert_rgb (`bool`, *optional*, defaults to `True`):
            Whether to convert inputs to RGB with `to_rgb_array`. With `False`, transformers' input handling applies
            and images keep their channels.
        **kwargs:
            Any other argument of `transformers.processing_utils.ImagesKwargs` (`do_center_crop`, `crop_size`,
            `do_pad`, ...).
    """

    def __init__(self, **kwargs):
        requires_backends(self, ["torch", "torchvision"])
        super().__init__(**kwargs)

    def _from_rgb_array(self, rgb: np.ndarray, source, device=None, **kwargs) -> "torch.Tensor":
        image = torch.from_numpy(rgb).permute(2, 0, 1).contiguous()
        if device is None and is_torch_tensor(source):
            device = source.device  # tensors come back on the device they came from
        return image.to(device) if device is not None else image


class MamoImageProcessorPil(MamoImageProcessingMixin, PilBackend):
    r"""
    MAMO image processor, PIL/numpy backend (portable, CPU only, no torchvision needed).

    Same arguments, defaults and input handling as [`MamoImageProcessor`]: RGB conversion by `to_rgb_array` (alpha
    composited on white), resize to 256 x 256 (bicubic), rescale by 1/255, normalise with mean = std = 0.5, and
    pairs of images giving `[batch, 2, 3, height, width]`. Resizing uses PIL instead of torchvision, so the two
    backends differ by interpolation rounding only (at most two 8-bit levels per pixel).
    """

    def _from_rgb_array(self, rgb: np.ndarray, source, **kwargs) -> np.ndarray:
        return np.ascontiguousarray(np.moveaxis(rgb, -1, 0))


__all__ = ["MamoImageProcessor", "MamoImageProcessorPil", "to_rgb_array", "flatten_images"]
