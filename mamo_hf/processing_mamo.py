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
"""Processor for MAMO: the MAMO image processor and a BERT tokenizer behind one call."""

from transformers.feature_extraction_utils import BatchFeature
from transformers.image_utils import ImageInput
from transformers.processing_utils import ProcessingKwargs, ProcessorMixin, Unpack
from transformers.tokenization_utils_base import TextInput

from .image_processing_mamo import flatten_images


class MamoProcessor(ProcessorMixin):
    r"""
    Processor for MAMO: a `MamoImageProcessor` (or `MamoImageProcessorPil`) and a `BertTokenizer`.

    `processor(images=..., text=..., **kwargs)` returns `pixel_values` from the image processor and `input_ids` and
    `attention_mask` from the tokenizer (`token_type_ids` only when asked for with `return_token_type_ids=True`:
    MAMO's text encoder does not take them). Text-only and image-only calls work. Keyword arguments go to the
    component that knows them (`padding`, `truncation`, `max_length` to the tokenizer; `size`, `do_normalize` to
    the image processor), or can be grouped as `text_kwargs={...}` / `images_kwargs={...}`.

    Its own defaults: no `token_type_ids`, and truncation on, whatever the padding: captions are cut to `max_length`
    when given, else to the tokenizer's `model_max_length` (512 for the BERT checkpoints MAMO starts from; the
    text encoder's `max_position_embeddings` for tokenizers saved by `mamo-hf pretrain`). Padding is off unless
    asked for, as for the tokenizer.

    Args:
        image_processor (`MamoImageProcessor` or `MamoImageProcessorPil`):
            The image processor.
        tokenizer (`BertTokenizer`):
            The tokenizer (the fast, Rust-backed `BertTokenizer` of transformers v5).
    """

    text_kwargs = {"return_token_type_ids": False, "truncation": True}

    def __init__(self, image_processor, tokenizer):
        super().__init__(image_processor, tokenizer)

    def __call__(
        self,
        images: ImageInput | None = None,
        text: TextInput | list[TextInput] | None = None,
        **kwargs: Unpack[ProcessingKwargs],
    ) -> BatchFeature:
        r"""
        Prepare images and/or captions for a MAMO model.

        Args:
            images (`PIL.Image.Image`, `np.ndarray`, `torch.Tensor`, path or URL, or a list of them, *optional*):
                One image, a batch of images, or a batch of pairs of images (a list of two-image lists, for NLVR2).
                Any PIL mode and any `(H, W)`, `(H, W, C)` or `(C, H, W)` array is converted to RGB; see
                `MamoImageProcessor`.
            text (`str` or `list[str]`, *optional*):
                One caption or a batch of captions: one per image for pairs, or any number to score against the
                images (zero-shot classification); one per pair of images for NLVR2.
            **kwargs:
                Tokenizer arguments (`padding`, `truncation`, `max_length`, `return_token_type_ids`, ...), image
                processor arguments (`size`, `do_normalize`, ...), `return_tensors`, or the grouped forms
                `text_kwargs={...}`, `images_kwargs={...}`.

        Returns:
            [`BatchFeature`]: `pixel_values` (`[batch, 3, H, W]`, or `[batch, 2, 3, H, W]` for pairs) when images are
            given; `input_ids` and `attention_mask` when text is given.

        Raises:
            ValueError: if neither images nor text are given, if an input is not an image, or if pairs of images
                and texts differ in number.
        """
        return super().__call__(images=images, text=text, **kwargs)

    def validate_inputs(self, images=None, text=None, videos=None, audio=None, **kwargs):
        """transformers' checks, plus: with pairs of images (NLVR2), one caption per pair. Single images and texts
        may differ in number (N images scored against M texts)."""
        super().validate_inputs(images=images, text=text, videos=videos, audio=audio, **kwargs)
        if images is None or text is None:
            return
        if isinstance(images, (list, tuple)):
            empty = [index for index, item in enumerate(images) if isinstance(item, (list, tuple)) and not item]
            if empty:
                raise ValueError(f"Sample {empty[0]} has no image (an empty list): every sample needs its image.")
        flat_images, are_pairs = flatten_images(images)
        num_texts = 1 if isinstance(text, str) else len(text)
        if are_pairs and len(flat_images) // 2 != num_texts:
            raise ValueError(
                f"Got {num_texts} text(s) and {len(flat_images) // 2} pairs of images: NLVR2 pairs each caption with "
                "one pair of images."
            )

    def to_dict(self) -> dict:
        """Serialise the processor. Once registered for an Auto class, the `auto_map` is always part of it
        (transformers adds it when saving and drops it when loading), so that `to_dict` is the same before and after
        a round trip."""
        output = super().to_dict()
        if self._auto_class is not None:
            module = type(self).__module__.rsplit(".", 1)[-1]
            output.setdefault("auto_map", {})[self._auto_class] = f"{module}.{type(self).__name__}"
        return output

    @property
    def model_input_names(self) -> list[str]:
        """The inputs a MAMO model takes: `pixel_values`, `input_ids`, `attention_mask` (no `token_type_ids`)."""
        return [name for name in super().model_input_names if name != "token_type_ids"]


__all__ = ["MamoProcessor"]
