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
"""Weight conversion from transformers checkpoints to MAMO (docs/method.md §1 "Architecture"): a `ViTModel` becomes the
image encoder, the first layers of a BERT the text encoder and the remaining ones the fusion encoder, BERT's MLM head
the MLM head. Used by `MamoPreTrainedModel.from_vision_text_pretrained` and `mamo-hf init-base`."""

import re

import torch
import torch.nn.functional as F
from transformers.conversion_mapping import register_checkpoint_conversion_mapping
from transformers.core_model_loading import ConversionOps, WeightConverter

from .configuration_mamo import MamoConfig, MamoFusionConfig, MamoTextConfig, MamoVisionConfig

_BERT_LAYER_RENAMES = (
    ("attention.self.query.", "attention.q_proj."),
    ("attention.self.key.", "attention.k_proj."),
    ("attention.self.value.", "attention.v_proj."),
    ("attention.output.dense.", "attention.o_proj."),
    ("attention.output.LayerNorm.", "attention_layernorm."),
    ("intermediate.dense.", "mlp.fc1."),
    ("output.dense.", "mlp.fc2."),
    ("output.LayerNorm.", "output_layernorm."),
)


def interpolate_position_embeddings(position_embeddings: torch.Tensor, grid_height: int, grid_width: int):
    """Resize learned ViT position embeddings `[1, 1 + g·g, D]` to a `grid_height × grid_width` patch grid.

    The [CLS] entry is kept; the patch entries are resampled bicubically (as DeiT and transformers' ViT do), so a
    model pre-trained at 256 px runs at 384 px. Returns `[1, 1 + grid_height·grid_width, D]`.
    """
    cls_position, patch_positions = position_embeddings[:, :1], position_embeddings[:, 1:]
    dim = position_embeddings.shape[-1]
    side = int(round(patch_positions.shape[1] ** 0.5))
    patch_positions = patch_positions.reshape(1, side, side, dim).permute(0, 3, 1, 2)
    patch_positions = F.interpolate(
        patch_positions.float(), size=(grid_height, grid_width), mode="bicubic", align_corners=False
    ).to(position_embeddings.dtype)
    patch_positions = patch_positions.permute(0, 2, 3, 1).reshape(1, grid_height * grid_width, dim)
    return torch.cat([cls_position, patch_positions], dim=1)


def vit_to_mamo_state_dict(
    vit_state: dict[str, torch.Tensor], grid_size: int, prefix: str = ""
) -> dict[str, torch.Tensor]:
    """Rename a transformers `ViTModel` state dict to MAMO's image encoder (`{prefix}image_encoder.*`).

    The ViT pooler has no MAMO counterpart and is left out. Position embeddings learned for another resolution are
    interpolated to a `grid_size × grid_size` patch grid.
    """
    mapped = {}
    for name, tensor in vit_state.items():
        if name.startswith("pooler.") or name == "embeddings.mask_token":
            continue
        name = name.replace("embeddings.patch_embeddings.projection.", "embeddings.patch_embeddings.")
        if name == "embeddings.position_embeddings" and tensor.shape[1] != 1 + grid_size**2:
            tensor = interpolate_position_embeddings(tensor, grid_size, grid_size)
        mapped[f"{prefix}image_encoder.{name}"] = tensor
    return mapped


_BERT_MLM_HEAD_RENAMES = {
    "cls.predictions.transform.dense.weight": "mlm_head.dense.weight",
    "cls.predictions.transform.dense.bias": "mlm_head.dense.bias",
    "cls.predictions.transform.LayerNorm.weight": "mlm_head.layernorm.weight",
    "cls.predictions.transform.LayerNorm.bias": "mlm_head.layernorm.bias",
    "cls.predictions.bias": "mlm_head.decoder.bias",
}


def bert_to_mamo_state_dict(
    bert_state: dict[str, torch.Tensor], num_text_layers: int, prefix: str = ""
) -> dict[str, torch.Tensor]:
    """Rename a transformers BERT state dict to MAMO's text and fusion encoders and MLM head.

    BERT layers `0..num_text_layers-1` become the text encoder's layers, the following ones the fusion encoder's
    (docs/method.md §1 "Architecture"); encoder keys get `prefix` (the base-model prefix of a head model). BERT's MLM
    head, when the checkpoint has one, becomes `mlm_head.*` (its decoder weight is tied to the word embeddings). The
    pooler and NSP head have no MAMO counterpart and are left out.
    """
    mapped = {}
    for name, tensor in bert_state.items():
        if name in _BERT_MLM_HEAD_RENAMES:
            mapped[_BERT_MLM_HEAD_RENAMES[name]] = tensor
            continue
        name = name.removeprefix("bert.")
        if name.startswith("embeddings."):
            mapped[prefix + "text_encoder." + name.replace(".LayerNorm.", ".layernorm.")] = tensor
            continue
        layer = re.fullmatch(r"encoder\.layer\.(\d+)\.(.+)", name)
        if layer is None:
            continue
        index, rest = int(layer[1]), layer[2]
        old, new = next(rename for rename in _BERT_LAYER_RENAMES if rest.startswith(rename[0]))
        rest = new + rest.removeprefix(old)
        if index < num_text_layers:
            mapped[f"{prefix}text_encoder.layers.{index}.{rest}"] = tensor
        else:
            mapped[f"{prefix}fusion_encoder.layers.{index - num_text_layers}.{rest}"] = tensor
    return mapped


def mamo_config_from_vit_bert(
    vit_config, bert_config, num_text_layers: int, image_size: int, special_tokens: dict[str, int], **overrides
) -> MamoConfig:
    """The `MamoConfig` of a model whose encoders come from a ViT and a BERT checkpoint (docs/method.md §1
    "Architecture")."""
    if not 0 < num_text_layers < bert_config.num_hidden_layers:
        raise ValueError(
            f"`num_text_layers` must be between 1 and {bert_config.num_hidden_layers - 1} so that both the text "
            f"and the fusion encoder get BERT layers, got {num_text_layers}."
        )
    shared = ("hidden_size", "num_attention_heads", "intermediate_size", "hidden_act", "layer_norm_eps")
    shared += ("hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range")
    vit_fields = {name: getattr(vit_config, name) for name in shared}
    bert_fields = {name: getattr(bert_config, name) for name in shared}
    return MamoConfig(
        vision_config=MamoVisionConfig(
            **vit_fields,
            num_hidden_layers=vit_config.num_hidden_layers,
            image_size=image_size,
            patch_size=vit_config.patch_size,
            num_channels=vit_config.num_channels,
            qkv_bias=vit_config.qkv_bias,
        ),
        text_config=MamoTextConfig(
            **bert_fields,
            num_hidden_layers=num_text_layers,
            vocab_size=bert_config.vocab_size,
            max_position_embeddings=bert_config.max_position_embeddings,
            type_vocab_size=bert_config.type_vocab_size,
            **special_tokens,
        ),
        fusion_encoder_config=MamoFusionConfig(
            **bert_fields, num_hidden_layers=bert_config.num_hidden_layers - num_text_layers
        ),
        **overrides,
    )


class TemperatureAsVector(ConversionOps):
    """Reads `log_temperature` as shape `[1]`. Checkpoints of mamo_hf before 0.1.1 hold it as a scalar, a shape
    FSDP2's `fully_shard` cannot shard; reshaping is its own reverse, so saving keeps `[1]`."""

    @torch.no_grad()
    def convert(self, input_dict: dict, source_patterns: list[str], target_patterns: list[str], **kwargs) -> dict:
        tensors = next(iter(input_dict.values()))
        tensor = tensors[0] if isinstance(tensors, list) else tensors
        return {target_patterns[0]: tensor.reshape(1)}

    @property
    def reverse_op(self) -> ConversionOps:
        return self


def register_checkpoint_conversions() -> None:
    """Tell transformers' loader how to read older MAMO checkpoints (`TemperatureAsVector`); done on import."""
    converter = WeightConverter("log_temperature", "log_temperature", [TemperatureAsVector()])
    register_checkpoint_conversion_mapping(MamoConfig.model_type, [converter], overwrite=True)


register_checkpoint_conversions()


__all__ = [
    "TemperatureAsVector",
    "bert_to_mamo_state_dict",
    "mamo_config_from_vit_bert",
    "register_checkpoint_conversions",
    "vit_to_mamo_state_dict",
]
