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
"""MAMO configuration: one sub-config per encoder and a composite config with the pre-training settings.

Every choice that the paper leaves open (docs/method.md §7 "Decisions where the paper is silent") is a field here, so
that a checkpoint states how it was trained.
"""

import math

from huggingface_hub.dataclasses import strict
from transformers.configuration_utils import PreTrainedConfig


def _require(condition: bool, field: str, message: str) -> None:
    """Raise a `ValueError` that names the offending config field."""
    if not condition:
        raise ValueError(f"`{field}` {message}")


def _check_heads(config: PreTrainedConfig) -> None:
    _require(
        config.hidden_size % config.num_attention_heads == 0,
        "hidden_size",
        f"({config.hidden_size}) must be divisible by `num_attention_heads` ({config.num_attention_heads}).",
    )


def _check_probability(value: float, field: str) -> None:
    _require(0.0 <= value < 1.0, field, f"must be in [0, 1), got {value}.")


def special_token_ids(tokenizer) -> dict[str, int]:
    """The special token ids a `MamoTextConfig` takes from a BERT tokenizer ([PAD], [CLS], [SEP], [MASK])."""
    names = ("pad_token_id", "cls_token_id", "sep_token_id", "mask_token_id")
    return {name: getattr(tokenizer, name) for name in names if getattr(tokenizer, name, None) is not None}


@strict
class MamoVisionConfig(PreTrainedConfig):
    r"""
    Configuration of the MAMO image encoder, a pre-LayerNorm ViT with a [CLS] token and learned position embeddings
    (ViT-B/16 by default). Position embeddings are learned for `image_size` and bicubically interpolated when the
    model sees another resolution (256 px pre-training, 384 px fine-tuning).

    Args:
        hidden_size (`int`, defaults to 768): width of the encoder.
        num_hidden_layers (`int`, defaults to 12): number of transformer layers.
        num_attention_heads (`int`, defaults to 12): attention heads per layer; must divide `hidden_size`.
        intermediate_size (`int`, defaults to 3072): width of the MLP.
        hidden_act (`str`, defaults to `"gelu"`): MLP activation.
        hidden_dropout_prob (`float`, defaults to 0.0): dropout after attention and MLP.
        attention_probs_dropout_prob (`float`, defaults to 0.0): dropout on attention probabilities.
        initializer_range (`float`, defaults to 0.02): std of the truncated-normal initialisation.
        layer_norm_eps (`float`, defaults to 1e-12): LayerNorm epsilon.
        image_size (`int`, defaults to 256): side of the square images the position embeddings are learned for.
        patch_size (`int`, defaults to 16): side of a square patch; must divide `image_size`.
        num_channels (`int`, defaults to 3): input channels.
        qkv_bias (`bool`, defaults to `True`): bias on the query, key and value projections.
    """

    model_type = "mamo_vision_model"
    base_config_key = "vision_config"

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float | int = 0.0
    attention_probs_dropout_prob: float | int = 0.0
    initializer_range: float | int = 0.02
    layer_norm_eps: float | int = 1e-12
    image_size: int = 256
    patch_size: int = 16
    num_channels: int = 3
    qkv_bias: bool = True

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.validate_encoder_fields()

    def validate_encoder_fields(self):
        """Check the field values; also run by `validate()` (e.g. on `save_pretrained`)."""
        _check_heads(self)
        _require(self.patch_size > 0, "patch_size", f"must be positive, got {self.patch_size}.")
        _require(
            self.image_size % self.patch_size == 0,
            "image_size",
            f"({self.image_size}) must be divisible by `patch_size` ({self.patch_size}).",
        )
        _check_probability(self.hidden_dropout_prob, "hidden_dropout_prob")
        _check_probability(self.attention_probs_dropout_prob, "attention_probs_dropout_prob")

    @property
    def num_patches(self) -> int:
        """Number of patches of an `image_size` × `image_size` image."""
        return (self.image_size // self.patch_size) ** 2


@strict
class MamoTextConfig(PreTrainedConfig):
    r"""
    Configuration of the MAMO text encoder: BERT embeddings and the first BERT layers (post-LayerNorm), initialised
    from layers 1..6 of `bert-base-uncased` for `mamo-base`.

    Args:
        vocab_size (`int`, defaults to 30522): vocabulary size of the tokenizer.
        hidden_size (`int`, defaults to 768): width of the encoder.
        num_hidden_layers (`int`, defaults to 6): number of transformer layers.
        num_attention_heads (`int`, defaults to 12): attention heads per layer; must divide `hidden_size`.
        intermediate_size (`int`, defaults to 3072): width of the MLP.
        hidden_act (`str`, defaults to `"gelu"`): MLP activation.
        hidden_dropout_prob (`float`, defaults to 0.1): dropout on embeddings and after attention and MLP.
        attention_probs_dropout_prob (`float`, defaults to 0.1): dropout on attention probabilities.
        max_position_embeddings (`int`, defaults to 512): longest text the model accepts.
        type_vocab_size (`int`, defaults to 2): number of BERT token types.
        initializer_range (`float`, defaults to 0.02): std of the normal initialisation.
        layer_norm_eps (`float`, defaults to 1e-12): LayerNorm epsilon.
        pad_token_id, cls_token_id, sep_token_id, mask_token_id (`int`): special token ids of the tokenizer
            (`bert-base-uncased` by default); masking never touches [CLS], [SEP] or padding and writes [MASK].
    """

    model_type = "mamo_text_model"
    base_config_key = "text_config"

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float | int = 0.1
    attention_probs_dropout_prob: float | int = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float | int = 0.02
    layer_norm_eps: float | int = 1e-12
    pad_token_id: int | None = 0
    cls_token_id: int | None = 101
    sep_token_id: int | None = 102
    mask_token_id: int | None = 103

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.validate_encoder_fields()

    def validate_encoder_fields(self):
        """Check the field values; also run by `validate()` (e.g. on `save_pretrained`)."""
        _check_heads(self)
        _require(self.vocab_size > 0, "vocab_size", f"must be positive, got {self.vocab_size}.")
        _check_probability(self.hidden_dropout_prob, "hidden_dropout_prob")
        _check_probability(self.attention_probs_dropout_prob, "attention_probs_dropout_prob")

    def check_special_token_ids(self):
        """Raise a `ValueError` naming the first special token id outside the vocabulary. Pre-training runs it (its
        masking writes [MASK] and spares [CLS], [SEP] and padding); it is not part of `validate()`, since
        transformers builds configs with default ids before setting the real ones."""
        for name in ("pad_token_id", "cls_token_id", "sep_token_id", "mask_token_id"):
            token_id = getattr(self, name)
            _require(
                token_id is None or 0 <= token_id < self.vocab_size,
                f"text_config.{name}",
                f"({token_id}) must be a token id of the vocabulary (0 to {self.vocab_size - 1}).",
            )


@strict
class MamoFusionConfig(PreTrainedConfig):
    r"""
    Configuration of the MAMO fusion encoder: BERT layers with merged attention over `[text tokens ; image tokens]`
    (docs/method.md §1 "Architecture"), initialised from layers 7..12 of `bert-base-uncased` for `mamo-base`. Its width
    must equal the text encoder's.

    Args:
        hidden_size (`int`, defaults to 768): width of the encoder.
        num_hidden_layers (`int`, defaults to 6): number of transformer layers.
        num_attention_heads (`int`, defaults to 12): attention heads per layer; must divide `hidden_size`.
        intermediate_size (`int`, defaults to 3072): width of the MLP.
        hidden_act (`str`, defaults to `"gelu"`): MLP activation.
        hidden_dropout_prob (`float`, defaults to 0.1): dropout after attention and MLP.
        attention_probs_dropout_prob (`float`, defaults to 0.1): dropout on attention probabilities.
        initializer_range (`float`, defaults to 0.02): std of the normal initialisation.
        layer_norm_eps (`float`, defaults to 1e-12): LayerNorm epsilon.
    """

    model_type = "mamo_fusion_model"
    base_config_key = "fusion_encoder_config"

    hidden_size: int = 768
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float | int = 0.1
    attention_probs_dropout_prob: float | int = 0.1
    initializer_range: float | int = 0.02
    layer_norm_eps: float | int = 1e-12

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.validate_encoder_fields()

    def validate_encoder_fields(self):
        """Check the field values; also run by `validate()` (e.g. on `save_pretrained`)."""
        _check_heads(self)
        _check_probability(self.hidden_dropout_prob, "hidden_dropout_prob")
        _check_probability(self.attention_probs_dropout_prob, "attention_probs_dropout_prob")


@strict
class MamoConfig(PreTrainedConfig):
    r"""
    Configuration of a MAMO model: the three encoders plus everything pre-training needs (docs/method.md §2 "Joint
    masking", §3 "Objectives").

    Args:
        vision_config (`dict` or `MamoVisionConfig`): image encoder.
        text_config (`dict` or `MamoTextConfig`): text encoder.
        fusion_encoder_config (`dict` or `MamoFusionConfig`): fusion encoder; `hidden_size` must equal the text
            encoder's. (Not `fusion_config`: transformers reserves that name for kernel fusion.)
        projection_dim (`int`, defaults to 256): size of the shared ITC space.
        temperature (`float`, defaults to 0.07): initial ITC temperature τ (learnable).
        temperature_min, temperature_max (`float`, defaults to 0.001 and 0.5): τ is clamped to this range.
        momentum (`float`, defaults to 0.995): EMA momentum m of the teacher, `θ̄ ← m·θ̄ + (1−m)·θ`.
        image_mask_ratio (`float`, defaults to 0.75): fraction of patches masked (dropped) in the view (Ĩ, T).
        text_mask_ratio (`float`, defaults to 0.25): fraction of word pieces masked in the view (I, T̃).
        text_mask_random_ratio, text_mask_keep_ratio (`float`, default 0.0): of the masked tokens, the fraction
            replaced by a random token and the fraction left unchanged (BERT's 80/10/10 is 0.1 and 0.1); the rest
            becomes [MASK]. [decision] 0 and 0: all [MASK], as in the paper's figure.
        queue_size (`int`, defaults to 0): ITC momentum queue length; 0 disables the queue. [decision]
        distill_alpha (`float`, defaults to 0.0): weight of the teacher's soft ITC targets; 0 disables it. [decision]
        itc_weight, itm_weight, mlm_weight, mim_weight, mrm_weight (`float`, default 1.0): objective weights; a weight
            of 0 skips that objective's computation.
        mrm_target_layers (`int`, defaults to 1): MRM target is the average of the top-K teacher fusion layers, each
            normalised by a parameter-free LayerNorm when K > 1. [decision]
        normalize_targets (`bool`, defaults to `False`): normalise each MIM and MRM target vector with a
            parameter-free LayerNorm (data2vec, MAE's normalised pixels), so that the student cannot lower the
            masked-modeling losses by shrinking the scale of the teacher's features. [decision]
        masked_modeling_warmup_steps (`int`, defaults to 0): the MIM and MRM weights ramp up linearly from 0 over this
            many teacher updates (optimizer steps), while the teacher is still close to its random initialisation.
            [decision]
        masked_modeling_start_step (`int`, defaults to 0): a staged schedule: MIM and MRM, and with them the teacher's
            forward pass and the masked-image view, are off until this many teacher updates (optimizer steps) have
            run, then on (ramped up over `masked_modeling_warmup_steps` from there). The teacher is updated from the
            first step on, so that it is an EMA of the student when the masked objectives start. 0: from the start.
            [decision]
        itm_negative_gradient (`bool`, defaults to `True`): back-propagate the ITM loss of the hard-negative pairs
            into the encoders that produced the negatives, as ALBEF does; `False` feeds them to the fusion encoder as
            constants.
        initializer_range (`float`, defaults to 0.02): std of the initialisation of the MAMO-specific layers.
        tie_word_embeddings (`bool`, defaults to `True`): tie the MLM decoder to the text word embeddings.

    Example:

    ```python
    >>> from mamo_hf import MamoConfig, MamoModel
    >>> config = MamoConfig.mamo_base()
    >>> model = MamoModel(config)  # randomly initialised mamo-base
    ```
    """

    model_type = "mamo"
    sub_configs_defaults = {
        "vision_config": MamoVisionConfig,
        "text_config": MamoTextConfig,
        "fusion_encoder_config": MamoFusionConfig,
    }

    vision_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    fusion_encoder_config: dict | PreTrainedConfig | None = None
    projection_dim: int = 256
    temperature: float | int = 0.07
    temperature_min: float | int = 0.001
    temperature_max: float | int = 0.5
    momentum: float | int = 0.995
    image_mask_ratio: float | int = 0.75
    text_mask_ratio: float | int = 0.25
    text_mask_random_ratio: float | int = 0.0
    text_mask_keep_ratio: float | int = 0.0
    queue_size: int = 0
    distill_alpha: float | int = 0.0
    itc_weight: float | int = 1.0
    itm_weight: float | int = 1.0
    mlm_weight: float | int = 1.0
    mim_weight: float | int = 1.0
    mrm_weight: float | int = 1.0
    mrm_target_layers: int = 1
    normalize_targets: bool = False
    masked_modeling_warmup_steps: int = 0
    masked_modeling_start_step: int = 0
    itm_negative_gradient: bool = True
    initializer_range: float | int = 0.02
    tie_word_embeddings: bool = True

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.validate_mamo_fields()

    def validate_mamo_fields(self):
        """Check the cross-field constraints; also run by `validate()` (e.g. on `save_pretrained`)."""
        _require(
            self.fusion_encoder_config.hidden_size == self.text_config.hidden_size,
            "fusion_encoder_config.hidden_size",
            f"({self.fusion_encoder_config.hidden_size}) must equal `text_config.hidden_size` "
            f"({self.text_config.hidden_size}): fusion layers continue the text encoder.",
        )
        _require(self.projection_dim > 0, "projection_dim", f"must be positive, got {self.projection_dim}.")
        _require(
            0.0 < self.temperature_min <= self.temperature <= self.temperature_max,
            "temperature",
            f"({self.temperature}) must lie in [temperature_min, temperature_max] = "
            f"[{self.temperature_min}, {self.temperature_max}] with temperature_min > 0.",
        )
        _require(0.0 <= self.momentum <= 1.0, "momentum", f"must be in [0, 1], got {self.momentum}.")
        _check_probability(self.image_mask_ratio, "image_mask_ratio")
        _check_probability(self.text_mask_ratio, "text_mask_ratio")
        _require(
            self.text_mask_random_ratio >= 0
            and self.text_mask_keep_ratio >= 0
            and self.text_mask_random_ratio + self.text_mask_keep_ratio <= 1.0,
            "text_mask_random_ratio",
            "and `text_mask_keep_ratio` must be non-negative with a sum of at most 1, got "
            f"{self.text_mask_random_ratio} and {self.text_mask_keep_ratio}.",
        )
        _require(self.queue_size >= 0, "queue_size", f"must be non-negative, got {self.queue_size}.")
        _require(0.0 <= self.distill_alpha <= 1.0, "distill_alpha", f"must be in [0, 1], got {self.distill_alpha}.")
        for name in self.objective_weight_names():
            value = getattr(self, name)
            _require(value >= 0, name, f"must be non-negative, got {value}.")
        fusion_layers = self.fusion_encoder_config.num_hidden_layers
        _require(
            1 <= self.mrm_target_layers <= fusion_layers,
            "mrm_target_layers",
            f"must be between 1 and the number of fusion layers ({fusion_layers}), got {self.mrm_target_layers}.",
        )
        _require(
            self.masked_modeling_warmup_steps >= 0,
            "masked_modeling_warmup_steps",
            f"must be non-negative, got {self.masked_modeling_warmup_steps}.",
        )
        _require(
            self.masked_modeling_start_step >= 0,
            "masked_modeling_start_step",
            f"must be non-negative, got {self.masked_modeling_start_step}.",
        )

    @property
    def counts_teacher_updates(self) -> bool:
        """Whether the masked objectives follow a schedule of teacher updates (a warm-up or a staged start), which
        the model counts in its `teacher_updates` buffer."""
        return self.masked_modeling_warmup_steps > 0 or self.masked_modeling_start_step > 0

    @classmethod
    def objective_weight_names(cls) -> tuple[str, ...]:
        """The fields `<objective>_weight`, one per pre-training objective (a new objective declares one)."""
        return tuple(name for name in cls.__dataclass_fields__ if name.endswith("_weight"))

    @classmethod
    def mamo_base(cls, **kwargs) -> "MamoConfig":
        """`mamo-base` (docs/method.md §1 "Architecture"): ViT-B/16 at 256 px, 6 BERT-base text layers, 6 fusion
        layers, 256-d ITC."""
        return cls(
            vision_config=MamoVisionConfig(),
            text_config=MamoTextConfig(),
            fusion_encoder_config=MamoFusionConfig(),
            **kwargs,
        )

    @classmethod
    def tiny(
        cls,
        vocab_size: int = 1000,
        image_size: int = 32,
        patch_size: int = 8,
        special_token_ids: dict[str, int] | None = None,
        **kwargs,
    ) -> "MamoConfig":
        """A MAMO of a few hundred thousand parameters for tests and CPU demos (width 64, 2 layers per encoder).

        `special_token_ids` sets `pad_token_id`, `cls_token_id`, `sep_token_id` and `mask_token_id` of the text
        config (take them from the tokenizer); other keyword arguments are top-level `MamoConfig` fields.

        Two settings differ from a scaled-down `mamo_base()`, because a tiny model trained from scratch otherwise sits
        for hundreds of steps at the collapsed ITC solution (all similarities equal; measured on the demo data):
        the initialisation std is scaled to the width, `0.02 · √(768 / 64) ≈ 0.07` (BERT's and ViT's 0.02 is tuned
        for width 768 and leaves a 64-wide model's attention nearly uniform), and there is no dropout.
        """
        width = {"hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 128, "num_hidden_layers": 2}
        std = {"initializer_range": 0.02 * math.sqrt(768 / width["hidden_size"])}
        std |= {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
        kwargs.setdefault("projection_dim", 32)
        kwargs.setdefault("initializer_range", std["initializer_range"])
        return cls(
            vision_config=MamoVisionConfig(image_size=image_size, patch_size=patch_size, **width, **std),
            text_config=MamoTextConfig(
                vocab_size=vocab_size, max_position_embeddings=64, **width, **std, **(special_token_ids or {})
            ),
            fusion_encoder_config=MamoFusionConfig(**width, **std),
            **kwargs,
        )


__all__ = ["MamoConfig", "MamoFusionConfig", "MamoTextConfig", "MamoVisionConfig", "special_token_ids"]
