# Copyright 2026 The mamo_hf authors. All rights reserved.
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
"""PyTorch MAMO: a ViT image encoder, a BERT text encoder and a merged-attention fusion encoder (docs/method.md §1
"Architecture")."""

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutput, BaseModelOutputWithPooling
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, PreTrainedModel
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput, TransformersKwargs, can_return_tuple, logging
from transformers.utils.generic import merge_with_config_defaults
from transformers.utils.output_capturing import capture_outputs

from .configuration_mamo import MamoConfig, MamoFusionConfig, MamoTextConfig, MamoVisionConfig, special_token_ids
from .conversion_mamo import (
    bert_to_mamo_state_dict,
    interpolate_position_embeddings,
    mamo_config_from_vit_bert,
    vit_to_mamo_state_dict,
)
from .losses_mamo import (
    JointMasking,
    caption_negative_logits,
    contrastive_targets,
    corrupt_text,
    gather_with_grad,
    gather_without_grad,
    image_mask_to_indices,
    image_text_contrastive_loss,
    image_text_matching_loss,
    itm_labels,
    masked_image_modeling_loss,
    masked_language_modeling_loss,
    masked_representation_loss,
    normalized_target,
    pad_to_length,
    representation_targets,
    sample_itm_negatives,
    scaled_similarity,
    world_size_and_rank,
)

logger = logging.get_logger(__name__)

# The classes a saved folder offers to `trust_remote_code` users, by Auto class.
MAMO_AUTO_MAP = {
    "AutoConfig": "configuration_mamo.MamoConfig",
    "AutoModel": "modeling_mamo.MamoModel",
    "AutoModelForPreTraining": "modeling_mamo.MamoForPreTraining",
    "AutoModelForVisualQuestionAnswering": "modeling_mamo.MamoForQuestionAnswering",
    "AutoModelForZeroShotImageClassification": "modeling_mamo.MamoForImageTextRetrieval",
    "AutoModelForSequenceClassification": "modeling_mamo.MamoForVisualReasoning",
}

# --------------------------------------------------------------------------------------------------------------------
# Input checks: fail early with a message that names the argument and the fix.
# --------------------------------------------------------------------------------------------------------------------


def check_pixel_values(pixel_values: torch.Tensor | None, num_channels: int) -> None:
    """Raise a `ValueError` unless `pixel_values` is a `[batch, num_channels, height, width]` tensor."""
    if pixel_values is None:
        raise ValueError("`pixel_values` is required: pass the images processed by `MamoImageProcessor`.")
    if pixel_values.dim() != 4:
        raise ValueError(
            f"`pixel_values` must have shape [batch, {num_channels}, height, width], got {tuple(pixel_values.shape)}."
        )
    if pixel_values.shape[1] != num_channels:
        raise ValueError(
            f"`pixel_values` has {pixel_values.shape[1]} channels but the image encoder expects {num_channels} "
            f"(`vision_config.num_channels`); convert the images to RGB (the processor does)."
        )
    if not pixel_values.is_floating_point():
        raise ValueError(
            f"`pixel_values` has dtype {pixel_values.dtype}: pass normalised floating-point images (the output of "
            "`MamoImageProcessor`), not raw pixel values."
        )


def check_text_inputs(input_ids: torch.Tensor, attention_mask: torch.Tensor | None, vocab_size: int) -> None:
    """Raise a `ValueError` unless `input_ids` are integer token ids of the vocabulary and `attention_mask` (if
    given) has their shape. (Out-of-range ids would otherwise fail inside the embedding lookup, on a GPU as a
    device-side assert that ends the process.)"""
    if input_ids.is_floating_point() or input_ids.is_complex():
        raise ValueError(f"`input_ids` must hold integer token ids, got dtype {input_ids.dtype}.")
    if attention_mask is not None and attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"`attention_mask` has shape {tuple(attention_mask.shape)} but `input_ids` has "
            f"{tuple(input_ids.shape)}: they must match (the processor returns both)."
        )
    if input_ids.ndim != 2 or input_ids.shape[1] == 0:
        raise ValueError(
            f"`input_ids` must be `[batch, length]` with at least one token per text, got shape "
            f"{tuple(input_ids.shape)}: tokenize with the processor (it adds [CLS] and [SEP])."
        )
    if input_ids.numel() > 0:
        smallest, largest = torch.aminmax(input_ids)
        if smallest < 0 or largest >= vocab_size:
            raise ValueError(
                f"`input_ids` holds token ids from {int(smallest)} to {int(largest)}, outside the vocabulary of "
                f"{vocab_size} (`text_config.vocab_size`): was the text tokenized with this model's tokenizer?"
            )


def check_same_batch_size(**tensors: torch.Tensor | None) -> None:
    """Raise a `ValueError` unless every given tensor has the same, non-zero, first dimension."""
    sizes = {name: tensor.shape[0] for name, tensor in tensors.items() if tensor is not None}
    if 0 in sizes.values():
        raise ValueError(f"Empty batch: `{next(name for name, size in sizes.items() if size == 0)}` holds no example.")
    if len(set(sizes.values())) > 1:
        described = ", ".join(f"`{name}` has {size}" for name, size in sizes.items())
        raise ValueError(f"Images and texts must come in pairs with the same batch size: {described}.")


def check_image_text_inputs(
    config: MamoConfig,
    input_ids: torch.Tensor | None,
    pixel_values: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    pairs: bool,
) -> torch.Tensor:
    """The input checks every MAMO forward starts with: `input_ids` given, `pixel_values` a float image batch with
    `config`'s channels, token ids of the vocabulary with a mask of their shape and, with `pairs`, as many images
    as texts. Raises a `ValueError` naming the problem; returns the attention mask (all ones when not given)."""
    if input_ids is None:
        raise ValueError("`input_ids` is required: pass the texts tokenized by `MamoProcessor`.")
    check_pixel_values(pixel_values, config.vision_config.num_channels)
    images = {"pixel_values": pixel_values} if pairs else {}
    check_same_batch_size(**images, input_ids=input_ids, attention_mask=attention_mask)
    check_text_inputs(input_ids, attention_mask, config.text_config.vocab_size)
    return torch.ones_like(input_ids) if attention_mask is None else attention_mask


def check_caption_negatives(input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None, batch_size: int):
    """Raise a `ValueError` unless caption negatives are absent or `[batch, k, length]` ids with a mask alike."""
    if input_ids is None and attention_mask is None:
        return
    if input_ids is None or attention_mask is None:
        raise ValueError(
            "Pass `negative_input_ids` and `negative_attention_mask` together (PretrainingCollator does)."
        )
    if input_ids.dim() != 3 or input_ids.shape != attention_mask.shape or input_ids.shape[0] != batch_size:
        raise ValueError(
            f"`negative_input_ids` and `negative_attention_mask` must both have shape [batch={batch_size}, k, "
            f"length], got {tuple(input_ids.shape)} and {tuple(attention_mask.shape)}."
        )


# --------------------------------------------------------------------------------------------------------------------
# Building blocks shared by the three encoders.
# --------------------------------------------------------------------------------------------------------------------


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention written out, `softmax(Q·Kᵀ·scaling + mask)·V`, which also returns the probabilities.

    Shapes: `query`/`key`/`value` `[batch, heads, length, head_dim]`; `attention_mask` additive `[batch, 1, q, k]`.
    Returns the output `[batch, length, heads, head_dim]` and the probabilities `[batch, heads, q, k]` (used for
    attention maps and Grad-CAM). The softmax runs in float32.
    """
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        scores = scores + attention_mask
    probabilities = F.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    probabilities = F.dropout(probabilities, p=dropout, training=module.training)
    output = torch.matmul(probabilities, value).transpose(1, 2).contiguous()
    return output, probabilities


class QuerySlots:
    """The positions selected by a `[batch, length]` boolean mask, laid out for attention.

    `pack` turns the selected rows `[n, D]` (row-major order, as `states[positions]` gives them) into `[batch,
    slots, D]`, each batch row's selections first and zeros after (`slots` = the most any row selects); `unpack`
    takes them back out. Attention then runs with queries at the selected positions only.
    """

    def __init__(self, positions: torch.Tensor):
        self.rows = positions.nonzero()[:, 0]
        self.slots = (positions.cumsum(dim=1) - 1)[positions]
        self.shape = (positions.shape[0], max(int(positions.sum(dim=1).max()), 1))

    def pack(self, selected: torch.Tensor) -> torch.Tensor:
        padded = selected.new_zeros(*self.shape, *selected.shape[1:])
        return padded.index_put((self.rows, self.slots), selected)

    def unpack(self, padded: torch.Tensor) -> torch.Tensor:
        return padded[self.rows, self.slots]


class MamoAttention(nn.Module):
    """Multi-head self-attention; the kernel comes from `config._attn_implementation` (SDPA by default)."""

    def __init__(self, config: MamoVisionConfig | MamoTextConfig | MamoFusionConfig):
        super().__init__()
        self.config = config
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.attention_dropout = config.attention_probs_dropout_prob
        self.is_causal = False
        qkv_bias = getattr(config, "qkv_bias", True)
        self.q_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=qkv_bias)
        self.k_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=qkv_bias)
        self.v_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=qkv_bias)
        self.o_proj = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        query_positions: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attention of `hidden_states` `[batch, length, D]` over itself. With `query_positions` (`[batch, length]`
        bool) only those positions query: keys and values still come from every position, and the output is
        `[n, D]`, the selected positions in row-major order (`hidden_states[query_positions]`'s order)."""
        head_shape = (*hidden_states.shape[:2], -1, self.head_dim)
        key = self.k_proj(hidden_states).view(head_shape).transpose(1, 2)
        value = self.v_proj(hidden_states).view(head_shape).transpose(1, 2)
        if query_positions is None:
            query = self.q_proj(hidden_states)
        else:
            slots = QuerySlots(query_positions)
            query = slots.pack(self.q_proj(hidden_states[query_positions]))
            if attention_mask is not None:  # a padding mask: every query row is the same
                attention_mask = attention_mask[..., :1, :]
        query = query.view(*query.shape[:2], -1, self.head_dim).transpose(1, 2)

        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        output, probabilities = attention_interface(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=self.attention_dropout if self.training else 0.0,
            scaling=self.scaling,
            **kwargs,
        )
        output = output.reshape(*output.shape[:2], -1)
        if query_positions is not None:
            output = slots.unpack(output)
        return self.o_proj(output.contiguous()), probabilities


class MamoMLP(nn.Module):
    """The transformer feed-forward block, `fc2(act(fc1(x)))`."""

    def __init__(self, config: MamoVisionConfig | MamoTextConfig | MamoFusionConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.activation_fn = ACT2FN[config.hidden_act]
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation_fn(self.fc1(hidden_states)))


class MamoVisionLayer(GradientCheckpointingLayer):
    """A pre-LayerNorm ViT block: `x + Attn(LN(x))`, then `x + MLP(LN(x))`."""

    def __init__(self, config: MamoVisionConfig):
        super().__init__()
        self.layernorm_before = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = MamoAttention(config)
        self.layernorm_after = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = MamoMLP(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> torch.Tensor:
        attention_output, _ = self.attention(self.layernorm_before(hidden_states), attention_mask, **kwargs)
        hidden_states = hidden_states + self.dropout(attention_output)
        return hidden_states + self.dropout(self.mlp(self.layernorm_after(hidden_states)))


class MamoTextLayer(GradientCheckpointingLayer):
    """A post-LayerNorm BERT block: `LN(x + Attn(x))`, then `LN(x + MLP(x))`. Used by the text and fusion encoders."""

    def __init__(self, config: MamoTextConfig | MamoFusionConfig):
        super().__init__()
        self.attention = MamoAttention(config)
        self.attention_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = MamoMLP(config)
        self.output_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_positions: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> torch.Tensor:
        """`[batch, length, D]` → `[batch, length, D]`; with `output_positions` (`[batch, length]` bool) the block
        runs at those positions only (attending to all) and returns `[n, D]`, `hidden_states[output_positions]`'s
        order."""
        attention_output, _ = self.attention(hidden_states, attention_mask, output_positions, **kwargs)
        if output_positions is not None:
            hidden_states = hidden_states[output_positions]
        hidden_states = self.attention_layernorm(hidden_states + self.dropout(attention_output))
        return self.output_layernorm(hidden_states + self.dropout(self.mlp(hidden_states)))


# --------------------------------------------------------------------------------------------------------------------
# Image encoder.
# --------------------------------------------------------------------------------------------------------------------


def gather_patches(patches: torch.Tensor, patch_indices: torch.Tensor) -> torch.Tensor:
    """Select `patches[b, patch_indices[b]]`: `[B, N, D]` and `[B, K]` → `[B, K, D]`."""
    return patches.gather(1, patch_indices.unsqueeze(-1).expand(-1, -1, patches.shape[-1]))


class MamoVisionEmbeddings(nn.Module):
    """Patch embeddings plus position embeddings, a [CLS] token and, MAE-style, the dropping of masked patches."""

    def __init__(self, config: MamoVisionConfig):
        super().__init__()
        self.patch_size = config.patch_size
        self.grid_size = config.image_size // config.patch_size
        self.patch_embeddings = nn.Conv2d(
            config.num_channels, config.hidden_size, kernel_size=config.patch_size, stride=config.patch_size
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.position_embeddings = nn.Parameter(torch.zeros(1, 1 + self.grid_size**2, config.hidden_size))
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def grid_for(self, height: int, width: int) -> tuple[int, int]:
        """The patch grid `(rows, columns)` of an image of `height × width` pixels."""
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(
                f"Image size {height}×{width} is not divisible by the patch size {self.patch_size}; resize the "
                "images with the processor."
            )
        return height // self.patch_size, width // self.patch_size

    def num_patches_for(self, height: int, width: int) -> int:
        """The number of patches of an image of `height × width` pixels."""
        rows, columns = self.grid_for(height, width)
        return rows * columns

    def position_embeddings_for(self, height: int, width: int) -> torch.Tensor:
        """Position embeddings `[1, 1 + n, D]` for an image of `height × width` pixels (interpolated if needed)."""
        grid_height, grid_width = self.grid_for(height, width)
        if grid_height == grid_width == self.grid_size:
            return self.position_embeddings
        return interpolate_position_embeddings(self.position_embeddings, grid_height, grid_width)

    def forward(self, pixel_values: torch.Tensor, visible_patch_indices: torch.Tensor | None = None):
        batch_size, _, height, width = pixel_values.shape
        pixel_values = pixel_values.to(self.patch_embeddings.weight.dtype)
        patches = self.patch_embeddings(pixel_values).flatten(2).transpose(1, 2)
        positions = self.position_embeddings_for(height, width)
        patches = patches + positions[:, 1:]
        if visible_patch_indices is not None:
            patches = gather_patches(patches, visible_patch_indices)
        cls_token = (self.cls_token + positions[:, :1]).expand(batch_size, -1, -1)
        return self.dropout(torch.cat([cls_token, patches], dim=1))


# --------------------------------------------------------------------------------------------------------------------
# Text and fusion embeddings.
# --------------------------------------------------------------------------------------------------------------------


class MamoTextEmbeddings(nn.Module):
    """BERT embeddings: word + position + token type, then LayerNorm and dropout."""

    def __init__(self, config: MamoTextConfig):
        super().__init__()
        self.max_position_embeddings = config.max_position_embeddings
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if inputs_embeds is None:
            try:
                inputs_embeds = self.word_embeddings(input_ids)
            except IndexError:  # torch's "index out of range in self" (on CPU; caught here at no cost per step)
                raise ValueError(
                    f"input_ids hold ids outside the vocabulary of {self.word_embeddings.num_embeddings} tokens "
                    f"(from {int(input_ids.min())} to {int(input_ids.max())}): tokenize with this model's processor."
                ) from None
        length = inputs_embeds.shape[1]
        if length == 0:
            raise ValueError("The text has no tokens (input_ids of length 0); tokenize it with the model's processor.")
        if length > self.max_position_embeddings:
            raise ValueError(
                f"The text has {length} tokens but the text encoder accepts at most {self.max_position_embeddings} "
                f"(`text_config.max_position_embeddings`); tokenize with `truncation=True, "
                f"max_length={self.max_position_embeddings}`."
            )
        if position_ids is None:
            position_ids = torch.arange(length, device=inputs_embeds.device).unsqueeze(0)
        if token_type_ids is None:
            token_type_ids = torch.zeros(inputs_embeds.shape[:2], dtype=torch.long, device=inputs_embeds.device)
        embeddings = (
            inputs_embeds + self.position_embeddings(position_ids) + self.token_type_embeddings(token_type_ids)
        )
        return self.dropout(self.layernorm(embeddings))


# --------------------------------------------------------------------------------------------------------------------
# Pre-trained model base and the three encoders.
# --------------------------------------------------------------------------------------------------------------------


class MamoPreTrainedModel(PreTrainedModel):
    """Weight initialisation and the loading conventions shared by every MAMO model."""

    config: MamoConfig
    base_model_prefix = "mamo"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_attention_backend = True
    _no_split_modules = ["MamoVisionEmbeddings", "MamoTextEmbeddings", "MamoVisionLayer", "MamoTextLayer"]
    # A pre-training checkpoint loads into the other classes without warnings about the parts they do not have.
    _keys_to_ignore_on_load_unexpected = [
        r"^teacher\.",
        r"^(itm_head|mlm_head|mim_predictor|mrm_predictor|vqa_head|nlvr_head)\.",
        r"^(image_queue|text_queue|queue_pointer|teacher_updates)$",
    ]

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """`PreTrainedModel.from_pretrained`, refusing at once, with an `OSError` naming it, a local path that cannot
        be a saved model: a file, or (without a `config`) a folder without `config.json`, as a training
        `checkpoint-N` is (transformers would unpickle the file as weights, or build a default config that fits no
        weight)."""
        if isinstance(pretrained_model_name_or_path, (str, os.PathLike)):
            path = Path(pretrained_model_name_or_path) / kwargs.get("subfolder", "")
            if path.is_file():
                raise OSError(f"{path} is a file: give the folder written by save_pretrained.")
            if path.is_dir() and kwargs.get("config") is None and not (path / "config.json").is_file():
                raise OSError(
                    f"{path} has no config.json: not a folder written by save_pretrained (a training checkpoint-N "
                    "holds weights alone: load the run's folder, or pass config=)."
                )
        return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

    def _initialize_weights(self, module: nn.Module, is_custom_code: bool = False):
        # transformers skips, for code outside the library, modules whose own tensors are all loaded (or that have
        # none), guarding against `_init_weights` that overwrite loaded tensors. Ours only uses
        # `transformers.initialization`, which leaves loaded tensors alone, and must reach `MamoForPreTraining`
        # itself (no tensors of its own) to copy the student into the teacher.
        super()._initialize_weights(module, is_custom_code=False)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module):
        super()._init_weights(module)
        std = self.config.initializer_range
        if isinstance(module, MamoVisionEmbeddings):
            init.trunc_normal_(module.position_embeddings, mean=0.0, std=std)
            init.trunc_normal_(module.cls_token, mean=0.0, std=std)
        elif isinstance(module, MamoModel):
            init.trunc_normal_(module.image_mask_embedding, mean=0.0, std=std)
            init.constant_(module.log_temperature, math.log(self.config.temperature))
        elif isinstance(module, MamoForPreTraining):
            # Runs after the student is initialised or loaded: a teacher absent from the checkpoint starts as a copy.
            for teacher_parameter, student_parameter in zip(module.teacher.parameters(), module.mamo.parameters()):
                init.copy_(teacher_parameter, student_parameter)
            if module.config.queue_size > 0:
                init.copy_(module.image_queue, _initial_queue(module.config))
                init.copy_(module.text_queue, _initial_queue(module.config, seed=1))
                init.zeros_(module.queue_pointer)
            if module.config.counts_teacher_updates:
                init.zeros_(module.teacher_updates)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`, with an `auto_map` naming every MAMO class, so that the folder loads
        with `trust_remote_code=True` through any of the Auto classes MAMO registers; a path that is a file is an
        `OSError` naming it (transformers only logs it, saves nothing and returns as if it had saved)."""
        if os.path.isfile(save_directory):
            raise OSError(f"{save_directory} is a file: save_pretrained writes a folder; give a folder's path.")
        if isinstance(self.config, MamoConfig):
            self.config.auto_map = {**MAMO_AUTO_MAP, **(getattr(self.config, "auto_map", None) or {})}
        return super().save_pretrained(save_directory, *args, **kwargs)

    @classmethod
    def from_vision_text_pretrained(
        cls,
        vision_model_name_or_path: str,
        text_model_name_or_path: str,
        num_text_layers: int | None = None,
        image_size: int | None = None,
        output_loading_info: bool = False,
        **config_overrides,
    ):
        r"""
        Build a MAMO model initialised as in the paper: the image encoder from a transformers ViT checkpoint, the text
        encoder from the first BERT layers and the fusion encoder from the remaining ones (docs/method.md §1
        "Architecture").

        Args:
            vision_model_name_or_path (`str`): a `ViTModel` checkpoint (e.g. `google/vit-base-patch16-224-in21k`).
            text_model_name_or_path (`str`): a BERT checkpoint (e.g. `bert-base-uncased`). Its tokenizer, if the
                folder has one, supplies the special token ids.
            num_text_layers (`int`, *optional*): BERT layers given to the text encoder; the rest form the fusion
                encoder. Defaults to half of BERT's layers (6 of 12).
            image_size (`int`, *optional*): pre-training resolution; position embeddings are interpolated to it.
                Defaults to the ViT's own (use 256 for the paper's recipe).
            output_loading_info (`bool`, *optional*): also return a dict with `new_keys` (weights that start from
                scratch: projections, mask embedding, modality types, heads) and `unused_keys` (source weights
                without a MAMO counterpart).
            config_overrides: top-level `MamoConfig` fields (e.g. `projection_dim=256`, `mlm_weight=0.0`).

        Returns:
            The model (in float32), or `(model, loading_info)`.

        Example:

        ```python
        >>> model = MamoForPreTraining.from_vision_text_pretrained(
        ...     "google/vit-base-patch16-224-in21k", "bert-base-uncased", image_size=256
        ... )
        ```
        """
        from transformers import AutoTokenizer, BertForMaskedLM, ViTModel

        vision = ViTModel.from_pretrained(vision_model_name_or_path, add_pooling_layer=False, dtype=torch.float32)
        text = BertForMaskedLM.from_pretrained(text_model_name_or_path, dtype=torch.float32)
        try:
            special_tokens = special_token_ids(AutoTokenizer.from_pretrained(text_model_name_or_path))
        except (OSError, ValueError):
            special_tokens = {}
            logger.warning(
                f"No tokenizer in {text_model_name_or_path}: keeping bert-base-uncased special token ids "
                "(pad 0, [CLS] 101, [SEP] 102, [MASK] 103)."
            )
        bert_layers = text.config.num_hidden_layers
        config = mamo_config_from_vit_bert(
            vision.config,
            text.config,
            num_text_layers=bert_layers // 2 if num_text_layers is None else num_text_layers,
            image_size=image_size or vision.config.image_size,
            special_tokens=special_tokens,
            **config_overrides,
        )
        prefix = "" if issubclass(cls, MamoModel) else f"{cls.base_model_prefix}."
        grid_size = config.vision_config.image_size // config.vision_config.patch_size
        state_dict = vit_to_mamo_state_dict(vision.state_dict(), grid_size, prefix)
        state_dict.update(bert_to_mamo_state_dict(text.state_dict(), config.text_config.num_hidden_layers, prefix))
        # Loading through from_pretrained runs `_init_weights` on what is missing only (e.g. copies the student
        # into the teacher) and ties the MLM decoder to the word embeddings.
        model, info = cls.from_pretrained(None, config=config, state_dict=state_dict, output_loading_info=True)
        new_keys = sorted(key for key in info["missing_keys"] if not key.startswith("teacher."))
        model_keys = model.state_dict().keys()
        unused_keys = sorted(key for key in state_dict if key not in model_keys)  # e.g. BERT's MLM head for MamoModel
        unused_keys += [key for key in text.state_dict() if key.startswith(("bert.pooler.", "cls.seq_relationship."))]
        logger.warning(
            f"Initialised {cls.__name__} from {vision_model_name_or_path} and {text_model_name_or_path}; "
            f"{len(new_keys)} weights are new and must be trained: {new_keys}"
        )
        if output_loading_info:
            return model, {"new_keys": new_keys, "unused_keys": unused_keys}
        return model


class MamoVisionModel(MamoPreTrainedModel):
    """The MAMO image encoder, usable alone: a ViT whose forward can keep only some patches (MAE-style masking).

    `pooler_output` is the final [CLS] state (after the last LayerNorm), the input of the ITC image projection.
    """

    config: MamoVisionConfig
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    _can_record_outputs = {"hidden_states": MamoVisionLayer, "attentions": MamoAttention}

    def __init__(self, config: MamoVisionConfig):
        super().__init__(config)
        self.embeddings = MamoVisionEmbeddings(config)
        self.layers = nn.ModuleList([MamoVisionLayer(config) for _ in range(config.num_hidden_layers)])
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.patch_embeddings

    @merge_with_config_defaults
    @capture_outputs(tie_last_hidden_states=False)
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        visible_patch_indices: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPooling:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `[batch, channels, height, width]`): images from
                `MamoImageProcessor`. Sizes other than `config.image_size` use interpolated position embeddings.
            visible_patch_indices (`torch.LongTensor` of shape `[batch, num_visible]`, *optional*): indices (row-major
                over the patch grid) of the patches to keep; the others are dropped before the first layer, so the
                encoder only pays for what it sees. `None` keeps every patch.

        Returns:
            `BaseModelOutputWithPooling`: `last_hidden_state` `[batch, 1 + num_visible, hidden]` ([CLS] first),
            `pooler_output` `[batch, hidden]` (the [CLS] state).
        """
        check_pixel_values(pixel_values, self.config.num_channels)
        hidden_states = self.embeddings(pixel_values, visible_patch_indices)
        for layer in self.layers:
            hidden_states = layer(hidden_states, None, **kwargs)
        last_hidden_state = self.layernorm(hidden_states)
        return BaseModelOutputWithPooling(last_hidden_state=last_hidden_state, pooler_output=last_hidden_state[:, 0])


class MamoTextModel(MamoPreTrainedModel):
    """The MAMO text encoder, usable alone: BERT embeddings and the first BERT layers.

    `pooler_output` is the final [CLS] state, the input of the ITC text projection (no BERT pooler).
    """

    config: MamoTextConfig
    main_input_name = "input_ids"
    input_modalities = ("text",)
    _can_record_outputs = {"hidden_states": MamoTextLayer, "attentions": MamoAttention}

    def __init__(self, config: MamoTextConfig):
        super().__init__(config)
        self.embeddings = MamoTextEmbeddings(config)
        self.layers = nn.ModuleList([MamoTextLayer(config) for _ in range(config.num_hidden_layers)])
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding):
        self.embeddings.word_embeddings = value

    @merge_with_config_defaults
    @capture_outputs
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPooling:
        r"""
        Args:
            input_ids (`torch.LongTensor` of shape `[batch, length]`): token ids from the BERT tokenizer.
            attention_mask (`torch.Tensor` of shape `[batch, length]`, *optional*): 1 for tokens, 0 for padding.
            token_type_ids, position_ids (`torch.LongTensor` of shape `[batch, length]`, *optional*): BERT inputs.
            inputs_embeds (`torch.FloatTensor` of shape `[batch, length, hidden]`, *optional*): instead of `input_ids`.

        Returns:
            `BaseModelOutputWithPooling`: `last_hidden_state` `[batch, length, hidden]`, `pooler_output`
            `[batch, hidden]` (the [CLS] state).
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of `input_ids` and `inputs_embeds` to the text encoder.")
        hidden_states = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds)
        attention_mask = create_bidirectional_mask(
            config=self.config, inputs_embeds=hidden_states, attention_mask=attention_mask
        )
        for layer in self.layers:
            hidden_states = layer(hidden_states, attention_mask, **kwargs)
        return BaseModelOutputWithPooling(last_hidden_state=hidden_states, pooler_output=hidden_states[:, 0])


class MamoFusionModel(MamoPreTrainedModel):
    """The MAMO fusion encoder: BERT layers with merged attention over `[text tokens ; image tokens]`.

    A learned modality-type embedding is added to each part; image tokens must already have the fusion width.
    """

    config: MamoFusionConfig
    main_input_name = "text_embeds"
    _can_record_outputs = {"hidden_states": MamoTextLayer, "attentions": MamoAttention}

    def __init__(self, config: MamoFusionConfig):
        super().__init__(config)
        self.modality_type_embeddings = nn.Embedding(2, config.hidden_size)
        self.layers = nn.ModuleList([MamoTextLayer(config) for _ in range(config.num_hidden_layers)])
        self.post_init()

    @merge_with_config_defaults
    @capture_outputs
    def forward(
        self,
        text_embeds: torch.Tensor,
        image_embeds: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_positions: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutput:
        r"""
        Args:
            text_embeds (`torch.FloatTensor` of shape `[batch, text_length, hidden]`): text-encoder states.
            image_embeds (`torch.FloatTensor` of shape `[batch, image_length, hidden]`): image tokens in fusion width.
            attention_mask (`torch.Tensor` of shape `[batch, text_length]`, *optional*): the text padding mask;
                image tokens are always attended to.
            output_positions (`torch.BoolTensor` of shape `[batch, text_length + image_length]`, *optional*): the
                positions whose final states are wanted. The last layer then runs at those positions only (its
                attention still reads every position), which spares the work of the states nobody reads.

        Returns:
            `BaseModelOutput`: `last_hidden_state` `[batch, text_length + image_length, hidden]`, text positions first;
            with `output_positions`, `[n, hidden]`: the selected positions in row-major order, equal to the full
            output indexed with `output_positions`.
        """
        check_same_batch_size(text_embeds=text_embeds, image_embeds=image_embeds)
        text_type, image_type = self.modality_type_embeddings.weight
        hidden_states = torch.cat([text_embeds + text_type, image_embeds + image_type], dim=1)
        if attention_mask is not None:
            image_mask = attention_mask.new_ones(image_embeds.shape[:2])
            attention_mask = torch.cat([attention_mask, image_mask], dim=1)
        attention_mask = create_bidirectional_mask(
            config=self.config, inputs_embeds=hidden_states, attention_mask=attention_mask
        )
        last = len(self.layers) - 1
        for index, layer in enumerate(self.layers):
            positions = output_positions if index == last else None
            hidden_states = layer(hidden_states, attention_mask, positions, **kwargs)
        if output_positions is not None and not self.layers:
            hidden_states = hidden_states[output_positions]
        return BaseModelOutput(last_hidden_state=hidden_states)


# --------------------------------------------------------------------------------------------------------------------
# MamoModel
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class MamoModelOutput(ModelOutput):
    r"""
    Output of [`MamoModel`]: `N` images scored against `M` texts, and each pair fused when they come in pairs.

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): the ITC loss of the pairs, with `return_loss=True`.
        last_hidden_state (`torch.FloatTensor` of shape `[batch, text_length + 1 + num_patches, hidden]`, *optional*):
            fusion-encoder states of the pairs, text positions first, then the image [CLS] and every patch position
            (for images alone or texts alone: that encoder's states).
        pooler_output (`torch.FloatTensor` of shape `[batch, hidden]`, *optional*): fusion state at position 0, the
            multimodal [CLS] used by ITM and the task heads (for one modality alone: its ITC features).
        image_embeds (`torch.FloatTensor` of shape `[N, projection_dim]`): L2-normalised ITC image features.
        text_embeds (`torch.FloatTensor` of shape `[M, projection_dim]`): L2-normalised ITC text features.
        logits_per_image (`torch.FloatTensor` of shape `[N, M]`): `image_embeds · text_embedsᵀ / τ`.
        logits_per_text (`torch.FloatTensor` of shape `[M, N]`): its transpose.
        image_model_output (`BaseModelOutputWithPooling`): image-encoder output (visible tokens only).
        text_model_output (`BaseModelOutputWithPooling`): text-encoder output.
        fusion_model_output (`BaseModelOutput`, *optional*): fusion-encoder output (hidden states, attentions on
            request).
    """

    loss: torch.FloatTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    image_embeds: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    logits_per_image: torch.FloatTensor | None = None
    logits_per_text: torch.FloatTensor | None = None
    image_model_output: BaseModelOutputWithPooling | None = None
    text_model_output: BaseModelOutputWithPooling | None = None
    fusion_model_output: BaseModelOutput | None = None

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(value.to_tuple() if isinstance(value, ModelOutput) else value for value in self.values())


def _pairing(num_images: int, num_texts: int, fuse_pairs: bool | None, return_loss: bool | None) -> bool:
    """Whether `MamoModel.forward` fuses the pairs (by default when images and texts come in pairs); fusing or an
    ITC loss without pairs is refused."""
    paired = num_images == num_texts
    fuse_pairs = paired if fuse_pairs is None else fuse_pairs
    if (fuse_pairs or return_loss) and not paired:
        wanted = "`fuse_pairs=True`" if fuse_pairs else "`return_loss=True`"
        raise ValueError(f"{wanted} needs images and texts in pairs, got {num_images} images and {num_texts} texts.")
    return fuse_pairs


class MamoModel(MamoPreTrainedModel):
    """MAMO: image encoder, text encoder, merged-attention fusion encoder and ITC projections (docs/method.md §1
    "Architecture").

    Besides `forward`, the building blocks are public so that training losses, retrieval and task heads call each
    encoder once per input: `get_image_features`, `get_text_features`, `restore_masked_patches` and `fuse`.

    `forward` scores `N` images against `M` texts with ITC, as CLIP does (`logits_per_image` `[N, M]`; the model of
    `AutoModelForZeroShotImageClassification` and of the "zero-shot-image-classification" pipeline), and fuses each
    pair when images and texts come in pairs.

    Example:

    ```python
    >>> from mamo_hf import MamoModel, MamoProcessor
    >>> model = MamoModel.from_pretrained("path/to/mamo-base")
    >>> processor = MamoProcessor.from_pretrained("path/to/mamo-base")
    >>> inputs = processor(images=images, text=captions, padding=True, return_tensors="pt")
    >>> outputs = model(**inputs)
    >>> outputs.logits_per_image.softmax(dim=-1)  # ITC: which caption goes with which image
    ```
    """

    config: MamoConfig
    main_input_name = "input_ids"

    def __init__(self, config: MamoConfig):
        super().__init__(config)
        vision_width = config.vision_config.hidden_size
        text_width = config.text_config.hidden_size
        self.image_encoder = MamoVisionModel(config.vision_config)
        self.text_encoder = MamoTextModel(config.text_config)
        self.fusion_encoder = MamoFusionModel(config.fusion_encoder_config)
        self.image_to_fusion = nn.Linear(vision_width, config.fusion_encoder_config.hidden_size)
        self.image_mask_embedding = nn.Parameter(torch.zeros(1, 1, vision_width))
        self.image_projection = nn.Linear(vision_width, config.projection_dim)
        self.text_projection = nn.Linear(text_width, config.projection_dim)
        # [decision] τ is learned in log space (as CLIP learns its logit scale): an Adam step then changes τ by a
        # relative amount, where a step on τ itself moves 0.07 by several percent and destabilises ITC early on.
        # Shape [1], not a scalar: FSDP2's `fully_shard` shards every parameter along its first dimension.
        self.log_temperature = nn.Parameter(torch.full((1,), math.log(config.temperature)))
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.text_encoder.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Embedding):
        self.text_encoder.set_input_embeddings(value)

    @property
    def itc_temperature(self) -> torch.Tensor:
        """The learned ITC temperature τ = exp(`log_temperature`), clamped to `[temperature_min, temperature_max]`
        (a scalar tensor)."""
        return self.log_temperature.exp().clamp(self.config.temperature_min, self.config.temperature_max)[0]

    @torch.no_grad()
    def clamp_temperature_(self):
        """Keep the learned τ inside `[temperature_min, temperature_max]` (ALBEF clamps it before every step)."""
        self.log_temperature.clamp_(math.log(self.config.temperature_min), math.log(self.config.temperature_max))

    @can_return_tuple
    def get_image_features(
        self,
        pixel_values: torch.Tensor,
        visible_patch_indices: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPooling:
        """Encode images. `pooler_output` holds the L2-normalised ITC features `[batch, projection_dim]`; the other
        fields are the image encoder's (`last_hidden_state` is what `fuse` takes)."""
        outputs = self.image_encoder(pixel_values, visible_patch_indices=visible_patch_indices, **kwargs)
        outputs.pooler_output = F.normalize(self.image_projection(outputs.pooler_output), dim=-1)
        return outputs

    @can_return_tuple
    def get_text_features(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPooling:
        """Encode texts. `pooler_output` holds the L2-normalised ITC features `[batch, projection_dim]`; the other
        fields are the text encoder's (`last_hidden_state` is what `fuse` takes)."""
        outputs = self.text_encoder(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            **kwargs,
        )
        outputs.pooler_output = F.normalize(self.text_projection(outputs.pooler_output), dim=-1)
        return outputs

    def restore_masked_patches(
        self, image_states: torch.Tensor, visible_patch_indices: torch.Tensor, image_size: tuple[int, int]
    ) -> torch.Tensor:
        """Put a token back at every dropped patch position, so the fusion encoder sees the full grid.

        A dropped patch `p` gets `mask_embedding + position_embedding[p]` (as an MAE decoder does); visible patches
        keep their encoder states. `image_states` `[B, 1 + K, Dv]` ([CLS] first) → `[B, 1 + N, Dv]`.
        """
        positions = self.image_encoder.embeddings.position_embeddings_for(*image_size)
        batch_size, dim = image_states.shape[0], image_states.shape[-1]
        full = (self.image_mask_embedding + positions[:, 1:]).to(image_states.dtype).expand(batch_size, -1, -1)
        index = visible_patch_indices.unsqueeze(-1).expand(-1, -1, dim)
        full = full.scatter(1, index, image_states[:, 1:])
        return torch.cat([image_states[:, :1], full], dim=1)

    def fuse(
        self,
        text_states: torch.Tensor,
        text_attention_mask: torch.Tensor | None,
        image_states: torch.Tensor,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutput:
        """Run the fusion encoder on text-encoder states `[B, L, Dt]` and image-encoder states `[B, M, Dv]`.

        Image states are projected to the fusion width first. Returns `[B, L + M, Dt]` states, text first; position 0
        is the multimodal [CLS].
        """
        return self.fusion_encoder(
            text_states, self.image_to_fusion(image_states), attention_mask=text_attention_mask, **kwargs
        )

    def _one_modality(
        self, input_ids, pixel_values, attention_mask, token_type_ids, position_ids, visible_patch_indices, **kwargs
    ) -> MamoModelOutput:
        """`forward` given images only or texts only: that modality's encoder states and ITC features."""
        if input_ids is None and pixel_values is not None:
            check_pixel_values(pixel_values, self.config.vision_config.num_channels)
            image_outputs = self.get_image_features(pixel_values, visible_patch_indices, **kwargs)
            return _one_modality_output(image_outputs, image_model_output=image_outputs)
        check_text_inputs(input_ids, attention_mask, self.config.text_config.vocab_size)
        text_outputs = self.get_text_features(
            input_ids, attention_mask, token_type_ids=token_type_ids, position_ids=position_ids, **kwargs
        )
        return _one_modality_output(text_outputs, text_model_output=text_outputs)

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        visible_patch_indices: torch.Tensor | None = None,
        fuse_pairs: bool | None = None,
        return_loss: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> MamoModelOutput:
        r"""
        Score `N` images against `M` texts with ITC and, when they come in pairs, fuse each pair.

        Given images only (as `pipeline("image-feature-extraction")` calls it) or texts only (as
        `pipeline("feature-extraction")` does), encode that modality alone: `last_hidden_state` is its encoder's
        states, `pooler_output` its L2-normalised ITC features, and no fusion or score is computed.

        Args:
            input_ids (`torch.LongTensor` of shape `[M, length]`): token ids from `MamoProcessor`.
            pixel_values (`torch.FloatTensor` of shape `[N, channels, height, width]`): images from `MamoProcessor`.
            attention_mask (`torch.Tensor` of shape `[M, length]`, *optional*): 1 for tokens, 0 for padding.
            token_type_ids, position_ids (`torch.LongTensor` of shape `[M, length]`, *optional*): BERT inputs.
            visible_patch_indices (`torch.LongTensor` of shape `[N, num_visible]`, *optional*): patches the image
                encoder keeps; dropped patches reach the fusion encoder as the learned mask embedding.
            fuse_pairs (`bool`, *optional*): run the fusion encoder on the pairs (image `i`, text `i`). Defaults to
                `N == M`; with `False` only the ITC scores are computed (the zero-shot classification case).
            return_loss (`bool`, *optional*): return the ITC loss of the pairs (CLIP's symmetric loss, the `i`-th
                text being the `i`-th image's positive; needs `N == M`).

        Returns:
            [`MamoModelOutput`]
        """
        if (input_ids is None) != (pixel_values is None):
            return self._one_modality(
                input_ids, pixel_values, attention_mask, token_type_ids, position_ids, visible_patch_indices, **kwargs
            )
        attention_mask = check_image_text_inputs(self.config, input_ids, pixel_values, attention_mask, pairs=False)
        fuse_pairs = _pairing(pixel_values.shape[0], input_ids.shape[0], fuse_pairs, return_loss)

        image_outputs = self.get_image_features(pixel_values, visible_patch_indices=visible_patch_indices, **kwargs)
        text_outputs = self.get_text_features(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            **kwargs,
        )
        fusion_outputs = None
        if fuse_pairs:
            image_states = image_outputs.last_hidden_state
            if visible_patch_indices is not None:
                image_states = self.restore_masked_patches(
                    image_states, visible_patch_indices, pixel_values.shape[-2:]
                )
            fusion_outputs = self.fuse(text_outputs.last_hidden_state, attention_mask, image_states, **kwargs)

        image_embeds, text_embeds = image_outputs.pooler_output, text_outputs.pooler_output
        temperature = self.itc_temperature
        logits_per_image = scaled_similarity(image_embeds, text_embeds, temperature)
        loss = None
        if return_loss:
            targets = contrastive_targets(torch.eye(len(image_embeds), dtype=torch.bool, device=image_embeds.device))
            loss, _ = image_text_contrastive_loss(
                image_embeds, text_embeds, image_embeds, text_embeds, temperature, targets, targets
            )
        fused_states = fusion_outputs.last_hidden_state if fusion_outputs is not None else None
        return MamoModelOutput(
            loss=loss,
            last_hidden_state=fused_states,
            pooler_output=fused_states[:, 0] if fused_states is not None else None,
            image_embeds=image_embeds,
            text_embeds=text_embeds,
            logits_per_image=logits_per_image,
            logits_per_text=logits_per_image.t(),
            image_model_output=image_outputs,
            text_model_output=text_outputs,
            fusion_model_output=fusion_outputs,
        )


def _one_modality_output(features: BaseModelOutputWithPooling, **model_output) -> MamoModelOutput:
    """`MamoModel`'s output for images alone or texts alone: that encoder's states and its ITC features."""
    embeds = "image_embeds" if "image_model_output" in model_output else "text_embeds"
    return MamoModelOutput(
        last_hidden_state=features.last_hidden_state,
        pooler_output=features.pooler_output,
        **{embeds: features.pooler_output},
        **model_output,
    )


class MamoModelWithHeads(MamoPreTrainedModel):
    """Base of the models that put heads on a `MamoModel` (`self.mamo`): pre-training and the task models. Its word
    embeddings are their input embeddings, and its features API is theirs, as CLIP offers it on every class:
    `get_image_features` and `get_text_features` return the L2-normalised ITC features in `pooler_output`.
    Subclasses add their heads, then call `post_init()`."""

    def __init__(self, config: MamoConfig):
        super().__init__(config)
        self.mamo = MamoModel(config)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.mamo.get_input_embeddings()

    def get_image_features(self, pixel_values: torch.Tensor, **kwargs) -> BaseModelOutputWithPooling:
        """`MamoModel.get_image_features` of the student: ITC image features in `pooler_output`."""
        return self.mamo.get_image_features(pixel_values, **kwargs)

    def get_text_features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs
    ) -> BaseModelOutputWithPooling:
        """`MamoModel.get_text_features` of the student: ITC text features in `pooler_output`."""
        return self.mamo.get_text_features(input_ids, attention_mask=attention_mask, **kwargs)


# --------------------------------------------------------------------------------------------------------------------
# Pre-training: joint masking, EMA teacher and the five objectives (docs/method.md §2 "Joint masking", §3 "Objectives")
# --------------------------------------------------------------------------------------------------------------------


class MamoPredictor(nn.Module):
    """A 2-layer MLP with GELU, `fc2(GELU(fc1(x)))`: the MIM predictor and the MRM predictor `g`."""

    def __init__(self, input_size: int, output_size: int):
        super().__init__()
        self.fc1 = nn.Linear(input_size, input_size)
        self.activation = nn.GELU()
        self.fc2 = nn.Linear(input_size, output_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation(self.fc1(hidden_states)))


class MamoMLMHead(nn.Module):
    """BERT's masked-language-modeling head: dense, activation, LayerNorm, then a decoder tied to the word
    embeddings (initialised from BERT's head by `from_vision_text_pretrained`)."""

    def __init__(self, config: MamoTextConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = ACT2FN[config.hidden_act]
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.layernorm(self.activation(self.dense(hidden_states))))


@dataclass
class MamoForPreTrainingOutput(ModelOutput):
    r"""
    Output of [`MamoForPreTraining`]. Losses of objectives whose weight is 0 are `None`.

    Args:
        loss (`torch.FloatTensor` of shape `()`): `Σ_k w_k · L_k` over the objectives of the table
            (`PRETRAINING_OBJECTIVES`).
        losses (`dict[str, torch.FloatTensor]`): every computed objective's loss by its name ("itc", "itm", ...).
        loss_itc, loss_itm, loss_mlm, loss_mim, loss_mrm (`torch.FloatTensor` of shape `()`): the paper's
            objectives, also in `losses`.
        logits_per_image (`torch.FloatTensor` of shape `[batch, candidates]`): ITC logits of this rank's images
            against the texts of the global batch (and the queue).
        itm_logits (`torch.FloatTensor` of shape `[3 · batch, 2]`): ITM logits of the positive pairs, of each image
            with its hard negative text and of each text with its hard negative image.
        itm_labels (`torch.LongTensor` of shape `[3 · batch]`): 1 = matched, 0 = not, -100 = no negative existed.
        mlm_accuracy (`torch.FloatTensor` of shape `()`): accuracy of the MLM predictions at the masked tokens.
    """

    loss: torch.FloatTensor | None = None
    losses: dict[str, torch.FloatTensor] | None = None
    loss_itc: torch.FloatTensor | None = None
    loss_itm: torch.FloatTensor | None = None
    loss_mlm: torch.FloatTensor | None = None
    loss_mim: torch.FloatTensor | None = None
    loss_mrm: torch.FloatTensor | None = None
    logits_per_image: torch.FloatTensor | None = None
    itm_logits: torch.FloatTensor | None = None
    itm_labels: torch.LongTensor | None = None
    mlm_accuracy: torch.FloatTensor | None = None


class FusionBatch:
    """The fusion views of one step, fused in a single call of the fusion encoder.

    A *view* is one image–text input of the fusion encoder (docs/method.md §2 "Joint masking", §3 "Objectives"): the
    clean pair (I, T), the masked image with the clean text (Ĩ, T), the clean image with the masked text (I, T̃), and
    the ITM pairs of an image with a hard negative text or a text with a hard negative image. Each view is
    `(text_states [b, L, Dt], text_mask [b, L], image_states [b, M, Dv])` plus the positions a loss will read,
    `(text_read [b, L], image_read [b, M])` booleans (all of them by default). Texts are padded to the longest one
    (padding is masked, so the states of real positions do not change), then all views are concatenated along the
    batch: the fusion encoder runs once on larger matrices instead of once per view.

    Args:
        read_positions_only (`bool`): run the fusion encoder's last layer at the read positions only
            (`MamoFusionModel`'s `output_positions`), which spares the work of states no loss reads. `False` runs it
            everywhere and selects afterwards: the reference that the equivalence tests and benchmarks compare with.
    """

    def __init__(self, read_positions_only: bool = True):
        self.read_positions_only = read_positions_only
        self.views: dict[str, tuple[torch.Tensor, ...]] = {}

    def add(self, name, text_states, text_mask, image_states, text_read=None, image_read=None):
        """Queue one view under `name`; `text_read`/`image_read` default to every position."""
        text_read = torch.ones_like(text_mask, dtype=torch.bool) if text_read is None else text_read
        if image_read is None:
            image_read = torch.ones(image_states.shape[:2], dtype=torch.bool, device=image_states.device)
        self.views[name] = (text_states, text_mask, image_states, text_read, image_read)

    def add_cls_only(self, name, text_states, text_mask, image_states):
        """Queue a view whose multimodal [CLS] (position 0) is the only state read."""
        text_read = torch.zeros_like(text_mask, dtype=torch.bool)
        text_read[:, 0] = True
        image_read = torch.zeros(image_states.shape[:2], dtype=torch.bool, device=image_states.device)
        self.add(name, text_states, text_mask, image_states, text_read, image_read)

    def fuse_at(self, model: "MamoModel", text_states, text_mask, image_states, read: torch.Tensor) -> torch.Tensor:
        """`model.fuse`'s states at the `read` positions (`[batch, L + M]` bool), `[n, D]` in row-major order."""
        if self.read_positions_only:
            return model.fuse(text_states, text_mask, image_states, output_positions=read).last_hidden_state
        return model.fuse(text_states, text_mask, image_states).last_hidden_state[read]

    def run(self, model: "MamoModel") -> dict[str, torch.Tensor]:
        """The fused states of each view at its read positions, `[n_view, Dt]` in row-major order (text positions
        first in each row): `[b, D]` for a [CLS]-only view, `[b · (L + M), D]` for a view read everywhere."""
        if not self.views:
            return {}
        length = max(view[0].shape[1] for view in self.views.values())
        columns = list(zip(*self.views.values()))
        text_states, text_mask = (
            torch.cat([pad_to_length(part, length) for part in column]) for column in columns[:2]
        )
        image_states = torch.cat(columns[2])
        read = torch.cat(
            [torch.cat([pad_to_length(text, length, value=False), image], dim=1) for text, image in zip(*columns[3:])]
        )
        fused = self.fuse_at(model, text_states, text_mask, image_states, read)
        sizes = torch.stack([text.sum() + image.sum() for text, image in zip(*columns[3:])]).tolist()
        return dict(zip(self.views, fused.split(sizes)))


# The ITM views of a batch, in the order of the ITM logits and labels.
MATCHING_VIEWS = ("positive", "image_with_negative_text", "text_with_negative_image")
# One more ITM view, after those, when a pre-training batch carries caption negatives.
CAPTION_NEGATIVE_VIEW = "image_with_caption_negative"


class _ImageTextAlignmentMixin:
    """ITC over the global batch and ITM with hard negatives, shared by `MamoForPreTraining` and
    `MamoForImageTextRetrieval`. What they read is declared here: the model (`mamo`), the ITM head and the config;
    the ITC queue (pre-training only) is passed in explicitly."""

    mamo: "MamoModel"
    itm_head: nn.Linear
    config: MamoConfig

    def _contrastive_loss(
        self,
        image,
        text,
        image_ids,
        teacher=None,
        queue: tuple[torch.Tensor, torch.Tensor] | None = None,
        extra_image_to_text_logits: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """ITC of this rank's pairs against the global batch. With the teacher's features and a `queue` of
        `(image_features, text_features)` (pre-training with `config.queue_size > 0`), the candidates are the
        teacher's features of the global batch and the queue; with `config.distill_alpha > 0` the targets mix in the
        teacher's similarities (momentum distillation). `extra_image_to_text_logits` `[B, K]` add each image's own
        caption negatives to its row."""
        image_embeds, text_embeds = image.pooler_output, text.pooler_output
        local_ids, global_ids = _pair_ids(image_ids, image_embeds)
        positives = local_ids[:, None] == global_ids[None, :]
        if queue is not None:
            image_queue, text_queue = queue
            image_candidates = torch.cat([gather_without_grad(teacher.image_embeds), image_queue.detach()])
            text_candidates = torch.cat([gather_without_grad(teacher.text_embeds), text_queue.detach()])
            positives = pad_to_length(positives, positives.shape[1] + image_queue.shape[0], dim=1, value=False)
        else:
            image_candidates, text_candidates = gather_with_grad(image_embeds), gather_with_grad(text_embeds)
        temperature = self.mamo.itc_temperature
        soft_i2t = soft_t2i = None
        alpha = self.config.distill_alpha if teacher is not None else 0.0
        if alpha > 0:
            with torch.no_grad():
                if queue is not None:
                    teacher_images, teacher_texts = image_candidates, text_candidates
                else:
                    teacher_images = gather_without_grad(teacher.image_embeds)
                    teacher_texts = gather_without_grad(teacher.text_embeds)
                soft_i2t = scaled_similarity(teacher.image_embeds, teacher_texts, temperature).softmax(-1)
                soft_t2i = scaled_similarity(teacher.text_embeds, teacher_images, temperature).softmax(-1)
        return image_text_contrastive_loss(
            image_embeds,
            text_embeds,
            image_candidates,
            text_candidates,
            temperature,
            contrastive_targets(positives, soft_i2t, alpha),
            contrastive_targets(positives, soft_t2i, alpha),
            extra_image_to_text_logits,
        )

    def _add_matching_views(
        self, batch, image, text, attention_mask, image_ids, generator, read_positives_everywhere=False
    ) -> torch.Tensor:
        """Add the ITM views to the fusion batch: the positives, each image with a hard negative text and each text
        with a hard negative image, drawn from the global batch (`sample_itm_negatives`). Returns the ITM labels
        `[3B]`. ITM reads the [CLS] of each view; with `read_positives_everywhere` the positives' states are kept
        at every position.

        With `config.itm_negative_gradient` (ALBEF's way, the default) the negatives' encoder states keep their
        gradient, gathered from every rank with `gather_with_grad`; otherwise they enter the fusion encoder as
        constants and the encoders learn from ITM only through the positives' side.
        """
        batch_size = attention_mask.shape[0]
        _, rank = world_size_and_rank()
        _, global_ids = _pair_ids(image_ids, attention_mask)
        gather = gather_with_grad if self.config.itm_negative_gradient else gather_without_grad
        all_image_states = gather(image.last_hidden_state)
        all_text_states = gather(text.last_hidden_state, pad_dim=1)
        all_text_masks = gather_without_grad(attention_mask, pad_dim=1)
        negatives = sample_itm_negatives(
            gather_without_grad(image.pooler_output),
            gather_without_grad(text.pooler_output),
            self.mamo.itc_temperature.detach(),
            global_ids,
            generator,
        )
        local = slice(rank * batch_size, (rank + 1) * batch_size)
        negative_texts, negative_images = negatives.texts[local], negatives.images[local]

        positive, with_negative_text, with_negative_image = MATCHING_VIEWS
        add_positive = batch.add if read_positives_everywhere else batch.add_cls_only
        add_positive(positive, text.last_hidden_state, attention_mask, image.last_hidden_state)
        batch.add_cls_only(
            with_negative_text,
            all_text_states[negative_texts],
            all_text_masks[negative_texts],
            image.last_hidden_state,
        )
        batch.add_cls_only(
            with_negative_image, text.last_hidden_state, attention_mask, all_image_states[negative_images]
        )
        return itm_labels(batch_size, negatives.image_has_negative[local], negatives.text_has_negative[local])

    def _matching_loss(self, cls_states: torch.Tensor, labels: torch.Tensor):
        """ITM logits `[3B, 2]` of the matching views' [CLS] states `[3B, D]` (`MATCHING_VIEWS` order), and their
        loss."""
        logits = self.itm_head(cls_states)
        return image_text_matching_loss(logits, labels), logits


# --------------------------------------------------------------------------------------------------------------------
# The objective table
# --------------------------------------------------------------------------------------------------------------------


class StudentEncoding(Enum):
    """A student encoding of the step: the clean image I and text T, the masked image Ĩ (visible patches only) and
    text T̃, and the batch's rule-based caption hard negatives (when it carries them)."""

    IMAGE = "image"
    TEXT = "text"
    MASKED_IMAGE = "masked_image"
    MASKED_TEXT = "masked_text"
    CAPTION_NEGATIVES = "caption_negatives"


class FusionView(Enum):
    """A fusion view of the step (`FusionBatch`), with the student encodings it is built from: the ITM views at
    [CLS], (Ĩ, T) read at the masked patches, (I, T̃) read at the masked tokens."""

    MATCHING = ("matching", (StudentEncoding.IMAGE, StudentEncoding.TEXT))
    MASKED_IMAGE = ("masked_image", (StudentEncoding.MASKED_IMAGE, StudentEncoding.TEXT))
    MASKED_TEXT = ("masked_text", (StudentEncoding.IMAGE, StudentEncoding.MASKED_TEXT))

    def __init__(self, label: str, encodings: tuple[StudentEncoding, ...]):
        self.label, self.encodings = label, encodings


class TeacherTarget(Enum):
    """A target the EMA teacher encodes from the clean pair: its image encoder's patch states `v̄`, its fusion
    states `h` at the masked positions, its ITC features (read only with a queue or distillation, see
    `MamoForPreTraining.teacher_targets`)."""

    IMAGE_STATES = "image_states"
    FUSION_STATES = "fusion_states"
    ITC_FEATURES = "itc_features"


@dataclass(frozen=True)
class PretrainingObjective:
    r"""
    One row of the objective table: what a pre-training objective reads from the step's encodings. `encode_views`
    computes the union of what the active objectives read, and nothing else; `forward` calls `<name>_loss` of each
    and sums them, weighted. A new objective is a row here, its `<name>_loss` method and its weight
    (`MamoConfig.<name>_weight`); its loss then appears in `MamoForPreTrainingOutput.losses`, and the training loop
    checks, logs and reports it from this table.

    Args:
        name (`str`): `config.<name>_weight` weighs the objective (0 switches it off), `MamoForPreTraining.<name>_loss`
            computes it.
        title (`str`): the objective in words, as the model card names it.
        encodings (`tuple[StudentEncoding, ...]`): student encodings it reads itself.
        views (`tuple[FusionView, ...]`): fusion views it reads.
        teacher (`tuple[TeacherTarget, ...]`): teacher targets it reads.
        masked_modeling (`bool`): it follows the masked-modeling schedule: off until
            `config.masked_modeling_start_step` teacher updates, then its weight ramps up from 0 over
            `config.masked_modeling_warmup_steps` of them (the teacher whose features it predicts starts close to its
            initialisation).
    """

    name: str
    title: str
    encodings: tuple[StudentEncoding, ...] = ()
    views: tuple[FusionView, ...] = ()
    teacher: tuple[TeacherTarget, ...] = ()
    masked_modeling: bool = False


# The objectives of docs/method.md §3 "Objectives", in the order they are computed.
PRETRAINING_OBJECTIVES = (
    PretrainingObjective(
        "itc",
        "image-text contrastive learning (ITC)",
        encodings=(StudentEncoding.IMAGE, StudentEncoding.TEXT, StudentEncoding.CAPTION_NEGATIVES),
        teacher=(TeacherTarget.ITC_FEATURES,),
    ),
    PretrainingObjective(
        "itm",
        "image-text matching (ITM)",
        encodings=(StudentEncoding.CAPTION_NEGATIVES,),
        views=(FusionView.MATCHING,),
    ),
    PretrainingObjective("mlm", "masked language modeling (MLM)", views=(FusionView.MASKED_TEXT,)),
    PretrainingObjective(
        "mim",
        "masked image modeling on momentum features (MIM)",
        views=(FusionView.MASKED_IMAGE,),
        teacher=(TeacherTarget.IMAGE_STATES,),
        masked_modeling=True,
    ),
    PretrainingObjective(
        "mrm",
        "masked representation modeling (MRM)",
        views=(FusionView.MASKED_IMAGE, FusionView.MASKED_TEXT),
        teacher=(TeacherTarget.FUSION_STATES,),
        masked_modeling=True,
    ),
)
OBJECTIVES = tuple(objective.name for objective in PRETRAINING_OBJECTIVES)


class ObjectiveOutput(NamedTuple):
    """What each `*_loss` method of `MamoForPreTraining` returns: the objective's `loss` (a scalar) and the extra
    fields it adds to `MamoForPreTrainingOutput` (e.g. the ITC logits, the MLM accuracy)."""

    loss: torch.Tensor
    outputs: dict[str, torch.Tensor] = {}


@dataclass
class MamoTeacherTargets:
    r"""
    The EMA teacher's encodings of the clean pair (no gradient), from which MIM and MRM build their targets and, with
    a queue or distillation, ITC reads its teacher features.

    Args:
        image_states (`torch.FloatTensor` of shape `[batch, 1 + num_patches, vision_hidden]`): the image encoder's
            output `v̄` ([CLS] first).
        image_embeds, text_embeds (`torch.FloatTensor` of shape `[batch, projection_dim]`): ITC features.
        fusion_token_layers (`tuple` of `torch.FloatTensor` of shape `[num_masked_tokens, hidden]`, *optional*) and
        fusion_patch_layers (`tuple` of `torch.FloatTensor` of shape `[batch, num_masked, hidden]`, *optional*): the
            top `config.mrm_target_layers` fusion layers' states of the clean pair at the masked tokens `M_t` and the
            masked patches `M_v`, last layer last (only when MRM is on).
    """

    image_states: torch.Tensor
    image_embeds: torch.Tensor
    text_embeds: torch.Tensor
    fusion_token_layers: tuple[torch.Tensor, ...] | None = None
    fusion_patch_layers: tuple[torch.Tensor, ...] | None = None


@dataclass
class CaptionNegativeEncodings:
    r"""
    The student's encodings of a batch's caption hard negatives (`PretrainingCollator(negatives=...)`).

    Args:
        states (`torch.FloatTensor` of shape `[num_negatives, length, hidden]`), attention_mask (`torch.Tensor` of
            shape `[num_negatives, length]`): text-encoder outputs of the negatives that exist, in row-major order.
        embeds (`torch.FloatTensor` of shape `[batch, k, projection_dim]`): their ITC features (zeros where missing).
        valid (`torch.BoolTensor` of shape `[batch, k]`): which negatives exist.
        logits (`torch.FloatTensor` of shape `[batch, k]`): each image's ITC logits against its own negatives
            (`caption_negative_logits`, −inf where missing), for ITC's softmax and for ITM's choice of the hardest.
    """

    states: torch.Tensor
    attention_mask: torch.Tensor
    embeds: torch.Tensor
    valid: torch.Tensor
    logits: torch.Tensor | None = None


@dataclass
class MamoPretrainingEncodings:
    r"""
    Everything one pre-training step encodes, once, for all objectives (docs/method.md §2 "Joint masking"): the
    student's clean encodings, the fusion outputs of every view, the masks, and the teacher's encodings. Fields no
    active objective reads are `None`.

    Args:
        input_ids, attention_mask (`torch.Tensor` of shape `[batch, length]`): the clean captions.
        image_ids (`torch.LongTensor` of shape `[batch]`, *optional*): the pairs' image ids (see `forward`).
        image, text (`BaseModelOutputWithPooling`): the student's encodings of the clean image and text.
        image_mask (`torch.BoolTensor` of shape `[batch, num_patches]`): `M_v`, patches dropped in (Ĩ, T).
        visible_patches, masked_patches (`torch.LongTensor` of shape `[batch, num_visible]`, `[batch, num_masked]`):
            the indices of the visible patches of Ĩ and of `M_v`, sorted.
        text_mask (`torch.BoolTensor` of shape `[batch, length]`): `M_t`, tokens masked in (I, T̃).
        masked_input_ids (`torch.LongTensor` of shape `[batch, length]`): T̃, the text with `M_t` replaced.
        fused (`dict[str, torch.FloatTensor]`): fusion outputs by view, at the positions a loss reads (`FusionBatch`):
            "masked_image" (Ĩ, T) at the masked patches, "masked_text" (I, T̃) at the masked tokens, the ITM views
            (`MATCHING_VIEWS`) at [CLS].
        itm_labels (`torch.LongTensor` of shape `[3 · batch]`): labels of the ITM views.
        teacher ([`MamoTeacherTargets`]): the teacher's encodings of the clean pair.
        caption_negatives ([`CaptionNegativeEncodings`]): the batch's caption hard negatives, when it carries them.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    image_ids: torch.Tensor | None = None
    image: BaseModelOutputWithPooling | None = None
    text: BaseModelOutputWithPooling | None = None
    image_mask: torch.Tensor | None = None
    visible_patches: torch.Tensor | None = None
    masked_patches: torch.Tensor | None = None
    text_mask: torch.Tensor | None = None
    masked_input_ids: torch.Tensor | None = None
    fused: dict[str, torch.Tensor] = field(default_factory=dict)
    itm_labels: torch.Tensor | None = None
    teacher: MamoTeacherTargets | None = None
    caption_negatives: CaptionNegativeEncodings | None = None

    def fused_patch_states(self) -> torch.Tensor:
        """Fusion outputs of (Ĩ, T) at the masked patches `M_v`: `[batch, num_masked, hidden]`."""
        return self.fused[FusionView.MASKED_IMAGE.label].view(*self.masked_patches.shape, -1)

    def fused_token_states(self) -> torch.Tensor:
        """Fusion outputs of (I, T̃) at the masked tokens `M_t`: `[num_masked_tokens, hidden]`."""
        return self.fused[FusionView.MASKED_TEXT.label]

    def matching_cls_states(self) -> torch.Tensor:
        """The [CLS] fusion outputs of the ITM views, `[3 · batch, hidden]` (`MATCHING_VIEWS` order), `[4 · batch,
        hidden]` with caption negatives."""
        return torch.cat([self.fused[name] for name in (*MATCHING_VIEWS, CAPTION_NEGATIVE_VIEW) if name in self.fused])


# The fields of `MamoForPreTrainingOutput`: an objective's loss has a field of its own when one is declared.
OUTPUT_FIELDS = frozenset(spec.name for spec in fields(MamoForPreTrainingOutput))


class MamoForPreTraining(_ImageTextAlignmentMixin, MamoModelWithHeads):
    """MAMO pre-training (docs/method.md §2 "Joint masking", §3 "Objectives"): joint masking, an EMA teacher and the
    objectives ITC, ITM, MLM, MIM and MRM.

    One step encodes the pair `(I, T)` and two corrupted views, `(Ĩ, T)` with 75% of the patches dropped and
    `(I, T̃)` with 25% of the word pieces masked (`encode_views`). The teacher (an EMA copy of the student, no
    gradient, always in eval mode) encodes the clean pair once. Each student encoder runs once per distinct input,
    and the fusion encoder runs once on all the views of the step (positives, hard negatives, both corrupted views).
    What each objective reads is declared in one table, `PRETRAINING_OBJECTIVES`; each objective is then one method
    (`itc_loss`, `itm_loss`, `mlm_loss`, `mim_loss`, `mrm_loss`) that calls one function of `losses_mamo` and
    returns an `ObjectiveOutput`.

    The masks come with the batch: `PretrainingCollator(processor, masking=JointMasking.from_config(config))` draws
    each pair's masks from its own key, so that every training loop (Accelerate, `Trainer`) masks alike. Called
    without masks, the model draws them itself with the same policy (`masking`).

    The teacher is not trained by the optimizer: call `update_teacher()` once per optimizer step (the training
    loop of `mamo_hf.training` and `MamoTeacherUpdateCallback` for `Trainer` do).

    Example:

    ```python
    >>> model = MamoForPreTraining.from_vision_text_pretrained("google/vit-base-patch16-224-in21k",
    ...                                                         "bert-base-uncased", image_size=256)
    >>> outputs = model(**processor(images=images, text=captions, padding=True, return_tensors="pt"))
    >>> outputs.loss.backward(); optimizer.step(); model.update_teacher()
    ```
    """

    accepts_loss_kwargs = False
    objective_table: tuple[PretrainingObjective, ...] = PRETRAINING_OBJECTIVES
    _tied_weights_keys = {"mlm_head.decoder.weight": "mamo.text_encoder.embeddings.word_embeddings.weight"}
    _keys_to_ignore_on_load_missing = [r"^teacher\."]  # absent teacher weights are copied from the student

    def __init__(self, config: MamoConfig):
        super().__init__(config)
        config.text_config.check_special_token_ids()
        fusion_width = config.fusion_encoder_config.hidden_size
        self.teacher = MamoModel(config)
        self.teacher.requires_grad_(False)
        self.itm_head = nn.Linear(fusion_width, 2)
        self.mlm_head = MamoMLMHead(config.text_config)
        self.mim_predictor = MamoPredictor(fusion_width, config.vision_config.hidden_size)
        # One MRM predictor g for the image and the text positions (docs/method.md §3.1 "MRM").
        self.mrm_predictor = MamoPredictor(fusion_width, fusion_width)
        if config.queue_size > 0:
            self.register_buffer("image_queue", _initial_queue(config))
            self.register_buffer("text_queue", _initial_queue(config, seed=1))
            self.register_buffer("queue_pointer", torch.zeros((), dtype=torch.long))
        if config.counts_teacher_updates:
            self.register_buffer("teacher_updates", torch.zeros((), dtype=torch.long))
        self.post_init()
        self.teacher.eval()

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """`PreTrainedModel.from_pretrained`; the loaded teacher is frozen again (loading re-creates parameters with
        `requires_grad=True`)."""
        loaded = super().from_pretrained(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        model.teacher.requires_grad_(False)
        return loaded

    def get_output_embeddings(self) -> nn.Linear:
        return self.mlm_head.decoder

    def resize_token_embeddings(self, *args, **kwargs) -> nn.Embedding:
        """Resize the student's word embeddings and MLM decoder (`PreTrainedModel.resize_token_embeddings`); the
        teacher is resized too and takes the student's new embeddings, so that EMA updates keep matching shapes."""
        embeddings = super().resize_token_embeddings(*args, **kwargs)
        teacher_embeddings = self.teacher.resize_token_embeddings(*args, **kwargs)
        with torch.no_grad():
            teacher_embeddings.weight.copy_(embeddings.weight)
        teacher_embeddings.weight.requires_grad_(False)
        return embeddings

    def set_output_embeddings(self, new_embeddings: nn.Linear):
        self.mlm_head.decoder = new_embeddings

    def train(self, mode: bool = True):
        """Set the student's mode; the teacher always stays in eval mode (no dropout)."""
        super().train(mode)
        self.teacher.eval()
        return self

    @torch.no_grad()
    def update_teacher(self):
        """One EMA step of the teacher towards the student: `θ̄ ← m·θ̄ + (1 − m)·θ`, with `m = config.momentum`.

        Call it once per optimizer step, after `optimizer.step()`; it is the same on every rank without
        communication, since every rank holds the same student after DDP's gradient averaging.
        """
        teacher, student = list(self.teacher.parameters()), list(self.mamo.parameters())
        torch._foreach_lerp_(teacher, student, 1.0 - self.config.momentum)
        if self.config.counts_teacher_updates:
            self.teacher_updates += 1

    @property
    def masking(self) -> JointMasking:
        """The joint masking policy of `config` (mask ratios, patch size, special tokens)."""
        return JointMasking.from_config(self.config)

    @property
    def active_objectives(self) -> tuple[PretrainingObjective, ...]:
        """The rows of `objective_table` whose weight is not 0, in their order of computation; the masked-modeling
        rows only from `config.masked_modeling_start_step` teacher updates on (the staged schedule)."""
        started = self.masked_modeling_started
        return tuple(
            row
            for row in self.objective_table
            if getattr(self.config, f"{row.name}_weight") > 0 and (started or not row.masked_modeling)
        )

    @property
    def masked_modeling_started(self) -> bool:
        """Whether the teacher updates have reached `config.masked_modeling_start_step`."""
        start = self.config.masked_modeling_start_step
        return start == 0 or int(self.teacher_updates) >= start

    def objective_weight(self, row: PretrainingObjective) -> float | torch.Tensor:
        """`config.<name>_weight` of a row; for a masked-modeling row (MIM, MRM) ramped up linearly over
        `config.masked_modeling_warmup_steps` teacher updates from `config.masked_modeling_start_step` on."""
        weight = getattr(self.config, f"{row.name}_weight")
        warmup = self.config.masked_modeling_warmup_steps
        if row.masked_modeling and warmup > 0:
            since_start = self.teacher_updates.float() - self.config.masked_modeling_start_step
            return weight * (since_start / warmup).clamp(min=0.0, max=1.0)
        return weight

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        image_mask: torch.Tensor | None = None,
        text_mask: torch.Tensor | None = None,
        image_ids: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        negative_input_ids: torch.Tensor | None = None,
        negative_attention_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> MamoForPreTrainingOutput:
        r"""
        One pre-training step's forward: encode the views, then each objective, then their weighted sum.

        Args:
            input_ids (`torch.LongTensor` of shape `[batch, length]`), pixel_values (`torch.FloatTensor` of shape
                `[batch, channels, height, width]`), attention_mask (`torch.Tensor` of shape `[batch, length]`):
                image-caption pairs from `MamoProcessor`.
            image_mask (`torch.BoolTensor` of shape `[batch, num_patches]`, *optional*): patches to mask (`True`),
                the same number in every image, as `PretrainingCollator` draws them. Drawn by `masking` when not
                given.
            text_mask (`torch.BoolTensor` of shape `[batch, length]`, *optional*): tokens to mask (`True`), as
                `PretrainingCollator` draws them. Drawn by `masking` when not given.
            image_ids (`torch.LongTensor` of shape `[batch]`, *optional*): an id per image; pairs that share an
                id are all ITC positives and never each other's ITM negatives (repeated images in a batch).
                Defaults to a distinct id per pair.
            generator (`torch.Generator`, *optional*): source of the masks drawn here, of the [MASK] replacement
                and of the hard-negative draws, on the model's device, for reproducible steps.
            negative_input_ids, negative_attention_mask (`torch.LongTensor` of shape `[batch, k, length]`,
                *optional*): up to `k` hard-negative captions per pair (`PretrainingCollator(negatives=...)`; a row of
                zeros in the mask is a missing negative). Each image's negatives join its row of ITC's softmax, and
                the hardest by ITC similarity is one more ITM negative of the image.

        Returns:
            [`MamoForPreTrainingOutput`]
        """
        attention_mask = check_image_text_inputs(self.config, input_ids, pixel_values, attention_mask, pairs=True)
        check_caption_negatives(negative_input_ids, negative_attention_mask, input_ids.shape[0])
        if self.training:
            self.mamo.clamp_temperature_()
        encodings = self.encode_views(
            pixel_values,
            input_ids,
            attention_mask,
            image_mask,
            text_mask,
            image_ids,
            generator,
            negative_input_ids,
            negative_attention_mask,
        )
        objectives = self.active_objectives
        results = {row.name: getattr(self, f"{row.name}_loss")(encodings) for row in objectives}
        if self.training and "itc" in results and self.config.queue_size > 0:
            self._enqueue(encodings.teacher.image_embeds, encodings.teacher.text_embeds)
        loss = sum(self.objective_weight(row) * results[row.name].loss for row in objectives) if results else None
        losses = {name: result.loss for name, result in results.items()}
        named = {f"loss_{name}": value for name, value in losses.items() if f"loss_{name}" in OUTPUT_FIELDS}
        return MamoForPreTrainingOutput(
            loss=loss,
            losses=losses,
            **named,
            **{key: value for result in results.values() for key, value in result.outputs.items()},
        )

    def encode_views(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        image_mask: torch.Tensor | None = None,
        text_mask: torch.Tensor | None = None,
        image_ids: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        negative_input_ids: torch.Tensor | None = None,
        negative_attention_mask: torch.Tensor | None = None,
    ) -> MamoPretrainingEncodings:
        """Every encoder pass of the step that the active objectives read (`PRETRAINING_OBJECTIVES`), each once:
        the teacher on (I, T); the student on I, T, Ĩ (visible patches only) and T̃; one fusion call for all views
        (docs/method.md §2 "Joint masking", §3 "Objectives")."""
        objectives = self.active_objectives
        views = {view for row in objectives for view in row.views}
        inputs = {encoding for row in objectives for encoding in row.encodings}
        inputs |= {encoding for view in views for encoding in view.encodings}
        encodings = MamoPretrainingEncodings(input_ids=input_ids, attention_mask=attention_mask, image_ids=image_ids)
        self._draw_masks(encodings, inputs, pixel_values, image_mask, text_mask, generator)
        targets = self.teacher_targets(objectives)
        if targets:
            encodings.teacher = self._encode_teacher(
                pixel_values, input_ids, attention_mask, targets, encodings.text_mask, encodings.image_mask
            )
        if StudentEncoding.IMAGE in inputs:
            encodings.image = self.mamo.get_image_features(pixel_values)
        if StudentEncoding.TEXT in inputs:
            encodings.text = self.mamo.get_text_features(input_ids, attention_mask=attention_mask)
        if StudentEncoding.CAPTION_NEGATIVES in inputs and negative_input_ids is not None:
            encodings.caption_negatives = self._encode_caption_negatives(
                negative_input_ids, negative_attention_mask, encodings.image
            )
        batch = FusionBatch()
        if FusionView.MASKED_IMAGE in views:
            self._add_masked_image_view(batch, encodings, pixel_values)
        if FusionView.MASKED_TEXT in views:
            self._add_masked_text_view(batch, encodings)
        if FusionView.MATCHING in views:
            encodings.itm_labels = self._add_matching_views(
                batch, encodings.image, encodings.text, attention_mask, image_ids, generator
            )
            if encodings.caption_negatives is not None:
                labels = self._add_caption_negative_view(batch, encodings.image, encodings.caption_negatives)
                encodings.itm_labels = torch.cat([encodings.itm_labels, labels])
        encodings.fused = batch.run(self.mamo)
        return encodings

    def _draw_masks(self, encodings, inputs, pixel_values, image_mask=None, text_mask=None, generator=None) -> None:
        """`M_v` for Ĩ and `M_t` with the corrupted ids of T̃, when the `inputs` need them: the batch's masks (drawn by
        `PretrainingCollator`), or drawn here with the same policy (`masking`)."""
        masking = self.masking
        if StudentEncoding.MASKED_IMAGE in inputs:
            if image_mask is None:
                num_patches = self.mamo.image_encoder.embeddings.num_patches_for(*pixel_values.shape[-2:])
                image_mask = masking.image_mask(pixel_values.shape[0], num_patches, generator, pixel_values.device)
            encodings.image_mask = image_mask
            encodings.visible_patches, encodings.masked_patches = image_mask_to_indices(image_mask)
        if StudentEncoding.MASKED_TEXT in inputs:
            input_ids, attention_mask = encodings.input_ids, encodings.attention_mask
            if text_mask is None:
                text_mask = masking.text_mask(input_ids, attention_mask, generator)
            encodings.text_mask = text_mask
            encodings.masked_input_ids = self.corrupt_text(input_ids, text_mask, generator)

    def _add_masked_image_view(self, batch: FusionBatch, encodings, pixel_values: torch.Tensor) -> None:
        """(Ĩ, T): the student's image encoder on the visible patches, the mask embedding put back at the masked ones,
        with the clean text; read at the masked patches."""
        masked_image = self.mamo.get_image_features(pixel_values, visible_patch_indices=encodings.visible_patches)
        restored = self.mamo.restore_masked_patches(
            masked_image.last_hidden_state, encodings.visible_patches, pixel_values.shape[-2:]
        )
        no_tokens = torch.zeros_like(encodings.attention_mask, dtype=torch.bool)
        masked_patches = F.pad(encodings.image_mask, (1, 0), value=False)  # [CLS] first, never read
        text_states = encodings.text.last_hidden_state
        batch.add(
            FusionView.MASKED_IMAGE.label, text_states, encodings.attention_mask, restored, no_tokens, masked_patches
        )

    def _add_masked_text_view(self, batch: FusionBatch, encodings) -> None:
        """(I, T̃): the student's text encoder on the corrupted text, with the clean image; read at the masked
        tokens."""
        masked_text = self.mamo.get_text_features(encodings.masked_input_ids, attention_mask=encodings.attention_mask)
        image_states = encodings.image.last_hidden_state
        no_patches = torch.zeros(image_states.shape[:2], dtype=torch.bool, device=image_states.device)
        batch.add(
            FusionView.MASKED_TEXT.label,
            masked_text.last_hidden_state,
            encodings.attention_mask,
            image_states,
            encodings.text_mask,
            no_patches,
        )

    def _encode_caption_negatives(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, image):
        """The student's text encodings of the caption negatives that exist (`[batch, k, length]` inputs), and each
        `image`'s ITC logits against its own negatives."""
        valid = attention_mask.bool().any(dim=-1)
        length = int(attention_mask.sum(dim=-1).max())  # the longest existing negative
        rows = valid.flatten()
        mask = attention_mask.flatten(0, 1)[rows, :length]
        text = self.mamo.get_text_features(input_ids.flatten(0, 1)[rows, :length], attention_mask=mask)
        embeds = text.pooler_output.new_zeros(*valid.shape, text.pooler_output.shape[-1])
        embeds[valid] = text.pooler_output
        logits = caption_negative_logits(image.pooler_output, embeds, valid, self.mamo.itc_temperature)
        return CaptionNegativeEncodings(text.last_hidden_state, mask, embeds, valid, logits)

    def _add_caption_negative_view(self, batch: FusionBatch, image, negatives: CaptionNegativeEncodings):
        """Add each image with its hardest caption negative (the highest ITC similarity) to the ITM views; returns
        their labels `[B]`: 0, or −100 for an image without negatives (its view then holds a placeholder)."""
        with torch.no_grad():
            hardest = negatives.logits.argmax(dim=1)
            has_negative = negatives.valid.any(dim=1)
            # Row of each image's chosen negative among the existing ones (row-major); a placeholder row 0 if none.
            rows = (negatives.valid.flatten().cumsum(0) - 1).view_as(negatives.valid)
            chosen = rows.gather(1, hardest[:, None]).squeeze(1).clamp(min=0)
        batch.add_cls_only(
            CAPTION_NEGATIVE_VIEW, negatives.states[chosen], negatives.attention_mask[chosen], image.last_hidden_state
        )
        return torch.where(has_negative, 0, -100)

    def teacher_targets(self, objectives: tuple[PretrainingObjective, ...]) -> set[TeacherTarget]:
        """The teacher targets the `objectives` read; ITC reads the teacher's features only with a queue
        (`config.queue_size > 0`) or distillation (`config.distill_alpha > 0`)."""
        targets = {target for row in objectives for target in row.teacher}
        if self.config.queue_size == 0 and self.config.distill_alpha == 0:
            targets.discard(TeacherTarget.ITC_FEATURES)
        return targets

    # One method per objective, in the order of `PRETRAINING_OBJECTIVES`; each returns an `ObjectiveOutput`.

    def itc_loss(self, encodings: MamoPretrainingEncodings) -> ObjectiveOutput:
        """ITC (`image_text_contrastive_loss`) and this rank's image-to-text logits."""
        queue = (self.image_queue, self.text_queue) if self.config.queue_size > 0 else None
        extra = encodings.caption_negatives.logits if encodings.caption_negatives is not None else None
        loss, logits = self._contrastive_loss(
            encodings.image, encodings.text, encodings.image_ids, encodings.teacher, queue, extra
        )
        return ObjectiveOutput(loss, {"logits_per_image": logits})

    def itm_loss(self, encodings: MamoPretrainingEncodings) -> ObjectiveOutput:
        """ITM (`image_text_matching_loss`) on the positives and the hard negatives, with the ITM logits and labels."""
        loss, logits = self._matching_loss(encodings.matching_cls_states(), encodings.itm_labels)
        return ObjectiveOutput(loss, {"itm_logits": logits, "itm_labels": encodings.itm_labels})

    def mlm_loss(self, encodings: MamoPretrainingEncodings) -> ObjectiveOutput:
        """MLM (`masked_language_modeling_loss`) at the masked tokens of (I, T̃), and the accuracy there."""
        logits = self.mlm_head(encodings.fused_token_states())
        loss, accuracy = masked_language_modeling_loss(logits, encodings.input_ids[encodings.text_mask])
        return ObjectiveOutput(loss, {"mlm_accuracy": accuracy})

    def mim_loss(self, encodings: MamoPretrainingEncodings) -> ObjectiveOutput:
        """MIM (`masked_image_modeling_loss`): the teacher's patch features `v̄` at the masked patches of (Ĩ, T),
        layer-normalised without parameters when `config.normalize_targets`."""
        predicted = self.mim_predictor(encodings.fused_patch_states())
        target = gather_patches(encodings.teacher.image_states[:, 1:], encodings.masked_patches)
        if self.config.normalize_targets:
            target = normalized_target(target)
        return ObjectiveOutput(masked_image_modeling_loss(predicted.flatten(0, 1), target.flatten(0, 1)))

    def mrm_loss(self, encodings: MamoPretrainingEncodings) -> ObjectiveOutput:
        """MRM (`masked_representation_loss`): the teacher's fusion states `h` of the clean pair at the masked patches
        of (Ĩ, T) plus at the masked tokens of (I, T̃), both through the one predictor `g`. The target is the last
        fusion layer or the average of the top `config.mrm_target_layers` (`representation_targets`), normalised as
        MIM's when `config.normalize_targets`."""
        teacher, top_layers, normalize = (
            encodings.teacher,
            self.config.mrm_target_layers,
            self.config.normalize_targets,
        )
        patch_target = representation_targets(teacher.fusion_patch_layers, top_layers, normalize)
        token_target = representation_targets(teacher.fusion_token_layers, top_layers, normalize)
        image_part = masked_representation_loss(
            self.mrm_predictor(encodings.fused_patch_states()).flatten(0, 1), patch_target.flatten(0, 1)
        )
        text_part = masked_representation_loss(self.mrm_predictor(encodings.fused_token_states()), token_target)
        return ObjectiveOutput(image_part + text_part)

    def corrupt_text(
        self, input_ids: torch.Tensor, text_mask: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """T̃: replace the masked tokens as `config` says ([MASK], or BERT's 80/10/10)."""
        text_config = self.config.text_config
        return corrupt_text(
            input_ids,
            text_mask,
            text_config.mask_token_id,
            text_config.vocab_size,
            self.config.text_mask_random_ratio,
            self.config.text_mask_keep_ratio,
            generator,
        )

    @torch.no_grad()
    def _encode_teacher(
        self, pixel_values, input_ids, attention_mask, targets: set[TeacherTarget], text_mask=None, image_mask=None
    ) -> MamoTeacherTargets:
        """The teacher's encodings of the clean pair: `v̄` and the ITC features, and for the fusion-states target
        the top `config.mrm_target_layers` fusion layers at the masked tokens and patches."""
        image = self.teacher.get_image_features(pixel_values)
        text = self.teacher.get_text_features(input_ids, attention_mask=attention_mask)
        encoded = MamoTeacherTargets(image.last_hidden_state, image.pooler_output, text.pooler_output)
        if TeacherTarget.FUSION_STATES in targets:
            read = torch.cat([text_mask, F.pad(image_mask, (1, 0), value=False)], dim=1)
            top_layers, inputs = (
                self.config.mrm_target_layers,
                (text.last_hidden_state, attention_mask, image.last_hidden_state),
            )
            if top_layers == 1:  # the last layer only at the read positions
                layers = (FusionBatch().fuse_at(self.teacher, *inputs, read),)
            else:
                fusion = self.teacher.fuse(*inputs, output_hidden_states=True)
                layers = tuple(state[read] for state in fusion.hidden_states[-top_layers:])
            is_token = read.nonzero()[:, 1] < text_mask.shape[1]
            encoded.fusion_token_layers = tuple(layer[is_token] for layer in layers)
            encoded.fusion_patch_layers = tuple(
                layer[~is_token].view(*image_mask.shape[:1], -1, layer.shape[-1]) for layer in layers
            )
        return encoded

    @torch.no_grad()
    def queue_state(self) -> dict[str, torch.Tensor] | None:
        """A copy of the ITC queues and their pointer (`None` without a queue), for `load_queue_state`: the
        training loop restores it when it skips a step whose loss was not finite."""
        if self.config.queue_size == 0:
            return None
        return {name: getattr(self, name).clone() for name in ("image_queue", "text_queue", "queue_pointer")}

    def load_queue_state(self, state: dict[str, torch.Tensor] | None) -> None:
        """Put back the queues saved by `queue_state`."""
        for name, tensor in (state or {}).items():
            getattr(self, name).copy_(tensor)

    def _enqueue(self, image_embeds: torch.Tensor, text_embeds: torch.Tensor):
        """Write the teacher features of the global batch into the ITC queues (the same on every rank)."""
        image_embeds, text_embeds = gather_without_grad(image_embeds), gather_without_grad(text_embeds)
        queue_size = self.config.queue_size
        slots = (self.queue_pointer + torch.arange(image_embeds.shape[0], device=image_embeds.device)) % queue_size
        self.image_queue[slots] = image_embeds.to(self.image_queue.dtype)
        self.text_queue[slots] = text_embeds.to(self.text_queue.dtype)
        self.queue_pointer.copy_((self.queue_pointer + image_embeds.shape[0]) % queue_size)


def _pair_ids(image_ids: torch.Tensor | None, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The ids of this rank's pairs and of the global batch: `image_ids` if given, else a distinct id per pair."""
    if image_ids is None:
        world_size, rank = world_size_and_rank()
        batch_size = like.shape[0]
        image_ids = torch.arange(rank * batch_size, (rank + 1) * batch_size, device=like.device)
    return image_ids, gather_without_grad(image_ids)


def _initial_queue(config: MamoConfig, seed: int = 0) -> torch.Tensor:
    """Random unit vectors `[queue_size, projection_dim]`, from a local seeded generator (reproducible init)."""
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(config.queue_size, config.projection_dim, generator=generator), dim=-1)


@dataclass
class MamoImageTextMatchingOutput(ModelOutput):
    r"""
    Output of [`MamoForImageTextRetrieval`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): the training loss, when requested.
        itm_logits (`torch.FloatTensor` of shape `[batch, 2]`, *optional*): image-text matching logits (not matched,
            matched) of the pairs; `None` when images and texts do not come in pairs.
        itm_scores (`torch.FloatTensor` of shape `[batch]`, *optional*): probability that each image matches its text.
        logits_per_image (`torch.FloatTensor` of shape `[N, M]`): ITC similarities divided by τ.
        logits_per_text (`torch.FloatTensor` of shape `[M, N]`): their transpose.
        image_embeds, text_embeds (`torch.FloatTensor` of shape `[N or M, projection_dim]`): ITC features.
        last_hidden_state (`torch.FloatTensor` of shape `[batch, text_length + 1 + num_patches, hidden]`, *optional*):
            fusion states of the pairs.
    """

    loss: torch.FloatTensor | None = None
    itm_logits: torch.FloatTensor | None = None
    itm_scores: torch.FloatTensor | None = None
    logits_per_image: torch.FloatTensor | None = None
    logits_per_text: torch.FloatTensor | None = None
    image_embeds: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None


class MamoForImageTextRetrieval(_ImageTextAlignmentMixin, MamoModelWithHeads):
    """MAMO for image-text retrieval: ITC similarities, and the image-text matching (ITM) head that re-ranks them.

    Fine-tuning (`return_loss=True`) optimises `itc_weight · ITC + itm_weight · ITM` as in pre-training: ITC over
    the global batch, where pairs that share an `image_id` (several captions of one image) are all positives, and
    ITM on each pair, each image with a hard negative text and each text with a hard negative image. Retrieval
    (`mamo_hf.evaluation.retrieval`) ranks candidates by ITC and re-ranks the best ones by ITM (docs/method.md §5
    "Downstream tasks").

    Example:

    ```python
    >>> model = MamoForImageTextRetrieval.from_pretrained("path/to/mamo-base")
    >>> outputs = model(**processor(images=images, text=captions, padding=True, return_tensors="pt"))
    >>> outputs.itm_scores  # P(match) for each (image, caption) pair
    ```
    """

    def __init__(self, config: MamoConfig):
        super().__init__(config)
        self.itm_head = nn.Linear(config.fusion_encoder_config.hidden_size, 2)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        image_ids: torch.Tensor | None = None,
        return_loss: bool | None = None,
        generator: torch.Generator | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> MamoImageTextMatchingOutput:
        r"""
        Score image-text pairs: the i-th image against the i-th text (ITM) and every image against every text (ITC).
        `N` images and `M ≠ N` texts get the ITC scores only (`logits_per_image` `[N, M]`), as zero-shot
        classification needs.

        Args:
            input_ids (`torch.LongTensor` of shape `[batch, length]`), pixel_values (`torch.FloatTensor` of shape
                `[batch, channels, height, width]`), attention_mask (`torch.Tensor` of shape `[batch, length]`):
                the pairs, as produced by `MamoProcessor`.
            image_ids (`torch.LongTensor` of shape `[batch]`, *optional*): an id per image; pairs sharing one are
                all ITC positives and never each other's hard negatives.
            return_loss (`bool`, *optional*): compute the fine-tuning loss (ITC + ITM with hard negatives). Defaults
                to the model's mode: on in training (so `Trainer` gets a loss with no extra input), off in eval.
            generator (`torch.Generator`, *optional*): source of the hard-negative draws.

        Returns:
            [`MamoImageTextMatchingOutput`]
        """
        attention_mask = check_image_text_inputs(self.config, input_ids, pixel_values, attention_mask, pairs=False)
        if return_loss is None:
            return_loss = self.training
        paired = pixel_values.shape[0] == input_ids.shape[0]
        if return_loss and not paired:
            raise ValueError(
                f"The fine-tuning loss needs image-text pairs, got {pixel_values.shape[0]} images and "
                f"{input_ids.shape[0]} texts (pass `return_loss=False` to score every image against every text)."
            )
        if self.training:
            self.mamo.clamp_temperature_()
        image = self.mamo.get_image_features(pixel_values, **kwargs)
        text = self.mamo.get_text_features(input_ids, attention_mask=attention_mask, **kwargs)
        logits_per_image = scaled_similarity(image.pooler_output, text.pooler_output, self.mamo.itc_temperature)
        scores = {
            "logits_per_image": logits_per_image,
            "logits_per_text": logits_per_image.t(),
            "image_embeds": image.pooler_output,
            "text_embeds": text.pooler_output,
        }
        if not paired:
            return MamoImageTextMatchingOutput(**scores)
        batch = FusionBatch()
        loss = itm_labels = None
        if return_loss:
            itm_labels = self._add_matching_views(
                batch, image, text, attention_mask, image_ids, generator, read_positives_everywhere=True
            )
        else:
            batch.add(MATCHING_VIEWS[0], text.last_hidden_state, attention_mask, image.last_hidden_state)
        fused = batch.run(self.mamo)
        fused_positives = fused[MATCHING_VIEWS[0]].view(input_ids.shape[0], -1, fused[MATCHING_VIEWS[0]].shape[-1])
        if return_loss:
            itc_loss, _ = self._contrastive_loss(image, text, image_ids)
            negatives = [fused[name] for name in MATCHING_VIEWS[1:]]
            itm_loss, _ = self._matching_loss(torch.cat([fused_positives[:, 0], *negatives]), itm_labels)
            loss = self.config.itc_weight * itc_loss + self.config.itm_weight * itm_loss
        itm_logits = self.itm_head(fused_positives[:, 0])
        return MamoImageTextMatchingOutput(
            loss=loss,
            itm_logits=itm_logits,
            itm_scores=itm_logits.softmax(dim=-1)[:, 1],
            last_hidden_state=fused_positives,
            **scores,
        )


class MamoClassificationHead(nn.Module):
    """The task classifier on the multimodal [CLS]: `Linear(d, 2d) → LayerNorm → GELU → Linear(2d, labels)`."""

    def __init__(self, input_size: int, hidden_size: int, num_labels: int, layer_norm_eps: float):
        super().__init__()
        self.dense = nn.Linear(input_size, hidden_size)
        self.layernorm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.activation = nn.GELU()
        self.classifier = nn.Linear(hidden_size, num_labels)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.activation(self.layernorm(self.dense(hidden_states))))


@dataclass
class MamoQuestionAnsweringOutput(ModelOutput):
    r"""
    Output of [`MamoForQuestionAnswering`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): BCE against the soft VQA scores, when `labels` are given.
        logits (`torch.FloatTensor` of shape `[batch, num_answers]`): one logit per answer of `config.id2label`.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None


class MamoForQuestionAnswering(MamoModelWithHeads):
    """MAMO for visual question answering: a classifier on the multimodal [CLS] over a fixed answer vocabulary
    (`config.id2label`, e.g. the 3,129 most frequent VQA v2 answers), trained with binary cross-entropy against soft
    VQA scores (docs/method.md §5 "Downstream tasks", [decision]).

    Example:

    ```python
    >>> model = MamoForQuestionAnswering.from_pretrained("path/to/mamo-vqa")
    >>> inputs = processor(images=image, text="what colour is the circle?", return_tensors="pt")
    >>> model.top_answers(model(**inputs).logits, k=3)
    [[('red', 0.97), ('orange', 0.02), ('purple', 0.004)]]
    ```
    """

    def __init__(self, config: MamoConfig):
        super().__init__(config)
        width = config.fusion_encoder_config.hidden_size
        self.vqa_head = MamoClassificationHead(width, 2 * width, config.num_labels, config.text_config.layer_norm_eps)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> MamoQuestionAnsweringOutput:
        r"""
        Args:
            input_ids (`torch.LongTensor` of shape `[batch, length]`), pixel_values (`torch.FloatTensor` of shape
                `[batch, channels, height, width]`), attention_mask (`torch.Tensor` of shape `[batch, length]`):
                images and questions from `MamoProcessor`.
            labels (`torch.FloatTensor` of shape `[batch, num_answers]`, *optional*): soft VQA scores in [0, 1]
                (`mamo_hf.evaluation.vqa.soft_scores`). The loss is `num_answers · BCE(logits, labels)` (the mean
                over answers times their number, i.e. the sum over answers averaged over questions).

        Returns:
            [`MamoQuestionAnsweringOutput`]
        """
        outputs = self.mamo(input_ids=input_ids, pixel_values=pixel_values, attention_mask=attention_mask, **kwargs)
        logits = self.vqa_head(outputs.pooler_output)
        loss = None
        if labels is not None:
            if labels.shape != logits.shape:
                raise ValueError(
                    f"`labels` must be soft scores of shape [batch, num_answers] = {tuple(logits.shape)}, got "
                    f"{tuple(labels.shape)}."
                )
            loss = F.binary_cross_entropy_with_logits(logits.float(), labels.float()) * labels.shape[1]
        return MamoQuestionAnsweringOutput(loss=loss, logits=logits)

    def top_answers(self, logits: torch.Tensor, k: int = 5) -> list[list[tuple[str, float]]]:
        """The `k` most likely answers of each question, best first, with their probabilities (sigmoid of the
        logits: each answer is scored independently, as in training)."""
        probabilities, indices = logits.float().sigmoid().topk(min(k, logits.shape[-1]), dim=-1)
        return [
            [(self.config.id2label[index], probability) for index, probability in zip(row_indices, row_probabilities)]
            for row_indices, row_probabilities in zip(indices.tolist(), probabilities.tolist())
        ]


@dataclass
class MamoVisualReasoningOutput(ModelOutput):
    r"""
    Output of [`MamoForVisualReasoning`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): cross-entropy, when `labels` are given.
        logits (`torch.FloatTensor` of shape `[batch, 2]`): false / true logits of each statement.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None


class MamoForVisualReasoning(MamoModelWithHeads):
    """MAMO for NLVR2: is a statement true of a pair of images? Each image is fused with the statement, the two
    multimodal [CLS] vectors are concatenated and classified (docs/method.md §5 "Downstream tasks", [decision]). The
    statement is encoded once.

    Example:

    ```python
    >>> inputs = processor(images=[[left, right]], text=["the left image has more red objects"], return_tensors="pt")
    >>> model(**inputs).logits.argmax(-1)  # 1 = true
    ```
    """

    def __init__(self, config: MamoConfig):
        super().__init__(config)
        width = config.fusion_encoder_config.hidden_size
        self.nlvr_head = MamoClassificationHead(2 * width, 2 * width, 2, config.text_config.layer_norm_eps)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> MamoVisualReasoningOutput:
        r"""
        Args:
            input_ids (`torch.LongTensor` of shape `[batch, length]`): the statements.
            pixel_values (`torch.FloatTensor` of shape `[batch, 2, channels, height, width]`): the image pairs, as
                `MamoProcessor` returns them for a list of pairs.
            attention_mask (`torch.Tensor` of shape `[batch, length]`, *optional*): the statements' padding mask.
            labels (`torch.LongTensor` of shape `[batch]`, *optional*): 1 = true, 0 = false.

        Returns:
            [`MamoVisualReasoningOutput`]
        """
        if pixel_values is None or pixel_values.dim() != 5 or pixel_values.shape[1] != 2:
            shape = None if pixel_values is None else tuple(pixel_values.shape)
            raise ValueError(
                f"`pixel_values` must hold a pair of images per statement, shape [batch, 2, channels, height, width]; "
                f"got {shape}. Pass `images=[[left, right], ...]` to the processor."
            )
        # The first image of each pair stands for both (one tensor: same shape and dtype).
        attention_mask = check_image_text_inputs(
            self.config, input_ids, pixel_values[:, 0], attention_mask, pairs=True
        )
        image = self.mamo.get_image_features(pixel_values.flatten(0, 1), **kwargs)  # [2B, ...]: left, right, ...
        text = self.mamo.get_text_features(input_ids, attention_mask=attention_mask, **kwargs)
        fused = self.mamo.fuse(
            text.last_hidden_state.repeat_interleave(2, dim=0),
            attention_mask.repeat_interleave(2, dim=0),
            image.last_hidden_state,
            **kwargs,
        ).last_hidden_state
        logits = self.nlvr_head(fused[:, 0].reshape(input_ids.shape[0], -1))
        loss = F.cross_entropy(logits.float(), labels) if labels is not None else None
        return MamoVisualReasoningOutput(loss=loss, logits=logits)


__all__ = [
    "MamoClassificationHead",
    "MamoForQuestionAnswering",
    "MamoForVisualReasoning",
    "MamoQuestionAnsweringOutput",
    "MamoVisualReasoningOutput",
    "PretrainingObjective",
    "StudentEncoding",
    "FusionView",
    "TeacherTarget",
    "MamoForPreTraining",
    "MamoForPreTrainingOutput",
    "MamoForImageTextRetrieval",
    "MamoFusionModel",
    "MamoImageTextMatchingOutput",
    "MamoModel",
    "MamoModelOutput",
    "MamoModelWithHeads",
    "MamoPreTrainedModel",
    "MamoTextModel",
    "MamoVisionModel",
]
