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
"""MAMO's objectives (docs/method.md §3 "Objectives") as small pure functions, plus joint masking and the cross-rank
gathers.

Every function works in one process without a process group; under `torch.distributed` the gathers make the
results equal to one process on the concatenated global batch (DDP averages the gradients of the ranks).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F

# --------------------------------------------------------------------------------------------------------------------
# Distributed helpers
# --------------------------------------------------------------------------------------------------------------------


def world_size_and_rank() -> tuple[int, int]:
    """`(world size, rank)` of the default process group, `(1, 0)` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward sums the gradient over ranks and returns this rank's slice."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        world_size, rank = world_size_and_rank()
        ctx.rank, ctx.batch_size = rank, tensor.shape[0]
        gathered = [torch.empty_like(tensor) for _ in range(world_size)]
        dist.all_gather(gathered, tensor.contiguous())
        return torch.cat(gathered, dim=0)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        grad = grad_output.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.batch_size : (ctx.rank + 1) * ctx.batch_size]


def gather_with_grad(tensor: torch.Tensor, pad_dim: int | None = None, pad_value: float = 0) -> torch.Tensor:
    """Concatenate `tensor` `[B, ...]` from every rank into `[world · B, ...]`, keeping the gradient.

    The backward all-reduces the incoming gradient, so that with DDP's gradient averaging each rank ends up with
    the gradient of the mean of the ranks' losses, i.e. of the single-process loss on the global batch. Every rank
    must pass the same `B`; with `pad_dim`, ranks may differ in the size of that dimension (padded with `pad_value`
    to the largest first). Without a process group this is the identity.
    """
    if world_size_and_rank()[0] == 1:
        return tensor
    if pad_dim is not None:
        tensor = pad_to_length(
            tensor, _max_over_ranks(tensor.shape[pad_dim], tensor.device), dim=pad_dim, value=pad_value
        )
    return _GatherWithGrad.apply(tensor)


def _max_over_ranks(value: int, device) -> int:
    size = torch.tensor([value], device=device)
    dist.all_reduce(size, op=dist.ReduceOp.MAX)
    return int(size.item())


@torch.no_grad()
def gather_without_grad(tensor: torch.Tensor, pad_dim: int | None = None, pad_value: float = 0) -> torch.Tensor:
    """Concatenate `tensor` from every rank along dim 0, as a constant (no gradient).

    With `pad_dim`, ranks may differ in the size of that dimension: every piece is padded with `pad_value` to the
    largest size first (for texts padded to different lengths on different ranks).
    """
    world_size, _ = world_size_and_rank()
    if world_size == 1:
        return tensor.detach()
    tensor = tensor.detach().contiguous()
    if pad_dim is not None:
        tensor = pad_to_length(
            tensor, _max_over_ranks(tensor.shape[pad_dim], tensor.device), dim=pad_dim, value=pad_value
        )
    gathered = [torch.empty_like(tensor) for _ in range(world_size)]
    dist.all_gather(gathered, tensor)
    return torch.cat(gathered, dim=0)


def pad_to_length(tensor: torch.Tensor, length: int, dim: int = 1, value: float = 0) -> torch.Tensor:
    """Pad `tensor` with `value` at the end of `dim` up to `length`."""
    missing = length - tensor.shape[dim]
    if missing <= 0:
        return tensor
    padding = [0, 0] * (tensor.dim() - dim - 1) + [0, missing]
    return F.pad(tensor, padding, value=value)


def distributed_mean(total: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """`total / count`, where `count` is averaged over ranks.

    With per-rank `total` (a sum over this rank's items) and `count` (their number), the mean over ranks of the
    result is `Σ total / Σ count`: the single-process mean over all items, even when ranks hold different numbers
    of items (masked tokens, say). Without a process group this is `total / count`.
    """
    world_size, _ = world_size_and_rank()
    count = count.detach().to(total.dtype)
    if world_size > 1:
        count = count.clone()
        dist.all_reduce(count)
        count = count / world_size
    return total / count.clamp(min=1)


# --------------------------------------------------------------------------------------------------------------------
# Joint masking (docs/method.md §2 "Joint masking")
# --------------------------------------------------------------------------------------------------------------------


def sample_image_mask(
    batch_size: int, num_patches: int, mask_ratio: float, generator: torch.Generator | None = None, device=None
) -> torch.Tensor:
    """Mask exactly `round(mask_ratio · num_patches)` patches per image, uniformly at random.

    Returns a boolean `[batch, num_patches]` mask, `True` = masked (dropped before the image encoder).
    """
    num_masked = round(mask_ratio * num_patches)
    noise = torch.rand(batch_size, num_patches, generator=generator, device=_device_of(generator, device))
    ranks = noise.argsort(dim=1).argsort(dim=1)
    return (ranks < num_masked).to(device)


def image_mask_to_indices(image_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a boolean `[B, N]` image mask into sorted `(visible, masked)` patch indices, `[B, N-M]` and `[B, M]`.

    Every row must mask the same number of patches (the image encoder drops them as one tensor).
    """
    counts = image_mask.sum(dim=1)
    if not bool((counts == counts[0]).all()):
        raise ValueError(f"`image_mask` must mask the same number of patches in every image, got {counts.tolist()}.")
    order = image_mask.to(torch.int8).argsort(dim=1, stable=True)  # visible patches first, each group in order
    num_visible = image_mask.shape[1] - int(counts[0])
    return order[:, :num_visible], order[:, num_visible:]


def sample_text_mask(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    special_token_ids: list[int],
    mask_ratio: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Mask `max(1, round(mask_ratio · n))` of the `n` real word pieces of each caption, uniformly at random.

    [CLS], [SEP], padding and other special tokens are never masked. Returns a boolean `[B, L]` mask, `True` =
    masked. A caption without any word piece gets no mask.
    """
    eligible = attention_mask.bool() & ~torch.isin(input_ids, torch.tensor(special_token_ids, device=input_ids.device))
    num_words = eligible.sum(dim=1, keepdim=True)
    num_masked = (num_words.float() * mask_ratio).round().clamp(min=1).minimum(num_words)
    noise = torch.rand(input_ids.shape, generator=generator, device=_device_of(generator, input_ids.device))
    noise = noise.to(input_ids.device).masked_fill(~eligible, 2.0)  # ineligible tokens sort last
    ranks = noise.argsort(dim=1).argsort(dim=1)
    return ranks < num_masked


def corrupt_text(
    input_ids: torch.Tensor,
    text_mask: torch.Tensor,
    mask_token_id: int,
    vocab_size: int,
    random_ratio: float = 0.0,
    keep_ratio: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """T̃: masked positions become [MASK], or with probability `random_ratio` a random token, or with probability
    `keep_ratio` stay unchanged (BERT's 80/10/10 is 0.1/0.1; MAMO's default 0/0 is all [MASK])."""
    corrupted = input_ids.masked_fill(text_mask, mask_token_id)
    if random_ratio == 0 and keep_ratio == 0:
        return corrupted
    draw = torch.rand(input_ids.shape, generator=generator, device=_device_of(generator, input_ids.device))
    draw = draw.to(input_ids.device)
    random_tokens = torch.randint(
        vocab_size, input_ids.shape, generator=generator, device=_device_of(generator, input_ids.device)
    ).to(input_ids.device)
    use_random = text_mask & (draw < random_ratio)
    keep = text_mask & (draw >= random_ratio) & (draw < random_ratio + keep_ratio)
    corrupted = torch.where(use_random, random_tokens, corrupted)
    return torch.where(keep, input_ids, corrupted)


@dataclass(frozen=True)
class JointMasking:
    """MAMO's masking policy (docs/method.md §2 "Joint masking"): which patches the masked image Ĩ drops and which word
    pieces the masked text T̃ hides. One policy in one place, used by the data collator (`PretrainingCollator`, which
    draws each pair's masks from the pair's own key) and by `MamoForPreTraining` when it is called without masks.

    Args:
        image_mask_ratio (`float`): each image masks exactly `round(image_mask_ratio · num_patches)` patches.
        text_mask_ratio (`float`): each caption masks `max(1, round(text_mask_ratio · n))` of its `n` word pieces.
        patch_size (`int`): side of an image patch in pixels.
        special_token_ids (`tuple[int, ...]`): tokens never masked ([PAD], [CLS], [SEP], [MASK]).
    """

    image_mask_ratio: float
    text_mask_ratio: float
    patch_size: int
    special_token_ids: tuple[int, ...]

    @classmethod
    def from_config(cls, config) -> "JointMasking":
        """The policy of a `MamoConfig`: its mask ratios, patch size and special tokens."""
        text = config.text_config
        special = (text.pad_token_id, text.cls_token_id, text.sep_token_id, text.mask_token_id)
        return cls(
            image_mask_ratio=config.image_mask_ratio,
            text_mask_ratio=config.text_mask_ratio,
            patch_size=config.vision_config.patch_size,
            special_token_ids=tuple(token for token in special if token is not None),
        )

    def num_patches(self, height: int, width: int) -> int:
        """The number of patches of a `height × width` image."""
        return (height // self.patch_size) * (width // self.patch_size)

    def image_mask(
        self, batch_size: int, num_patches: int, generator: torch.Generator | None = None, device=None
    ) -> torch.Tensor:
        """A batch's patch mask `[batch, num_patches]` (`True` = masked), from one generator."""
        return sample_image_mask(batch_size, num_patches, self.image_mask_ratio, generator, device)

    def text_mask(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """A batch's token mask `[batch, length]` (`True` = masked), from one generator; never special tokens."""
        return sample_text_mask(
            input_ids, attention_mask, list(self.special_token_ids), self.text_mask_ratio, generator
        )

    def masks_per_pair(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, num_patches: int, keys: Sequence[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The image and text masks of a batch, each pair's drawn from its own generator seeded by `keys[b]`.

        A pair's masks then depend on its key only, not on what else is in its batch, on the number of processes or
        on gradient accumulation (the datasets key each pair by seed, epoch and index, so a resumed run draws the
        same masks). The text mask is drawn over the caption's own tokens, whatever the batch's padding.

        Returns:
            `(image_mask, text_mask)`: booleans `[batch, num_patches]` and `[batch, length]`, on the CPU.
        """
        image_mask = torch.zeros(len(keys), num_patches, dtype=torch.bool)
        text_mask = torch.zeros(input_ids.shape, dtype=torch.bool)
        input_ids, attention_mask = input_ids.cpu(), attention_mask.cpu()
        for row, key in enumerate(keys):
            generator = torch.Generator().manual_seed(int(key))
            image_mask[row] = self.image_mask(1, num_patches, generator)[0]
            tokens = input_ids[row, attention_mask[row].bool()][None]
            text_mask[row, attention_mask[row].bool()] = self.text_mask(tokens, torch.ones_like(tokens), generator)[0]
        return image_mask, text_mask


def _device_of(generator: torch.Generator | None, fallback):
    """Random numbers are drawn on the generator's device (a generator only serves its own device)."""
    return generator.device if generator is not None else fallback


# --------------------------------------------------------------------------------------------------------------------
# ITC
# --------------------------------------------------------------------------------------------------------------------


def scaled_similarity(rows: torch.Tensor, columns: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """`rows · columnsᵀ / τ` `[R, C]` in float32, also under autocast: a bf16 product of unit vectors is off by
    about 4e-3, which τ = 0.07 turns into 0.03 in a logit (and τ → 0.001 into 2)."""
    with torch.autocast(device_type=rows.device.type, enabled=False):
        return rows.float() @ columns.float().t() / temperature.float()


def contrastive_targets(
    positive_mask: torch.Tensor, soft_targets: torch.Tensor | None = None, alpha: float = 0.0
) -> torch.Tensor:
    """Target distribution of each row: uniform over its positives, mixed with soft targets when distilling.

    `y = (1 − α) · positives / #positives + α · soft_targets`. Shapes `[B, C]`.
    """
    targets = positive_mask.float() / positive_mask.float().sum(dim=1, keepdim=True)
    if soft_targets is not None and alpha > 0:
        targets = (1.0 - alpha) * targets + alpha * soft_targets
    return targets


def image_text_contrastive_loss(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    image_candidates: torch.Tensor,
    text_candidates: torch.Tensor,
    temperature: torch.Tensor,
    image_to_text_targets: torch.Tensor,
    text_to_image_targets: torch.Tensor,
    extra_image_to_text_logits: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Symmetric InfoNCE over the candidates of the global batch (ITC).

    With `s(v, t) = vᵀt / τ` on L2-normalised features,

    `L = ½ [ −Σ_c y^{i2t}_{bc} log softmax_c s(v_b, t_c) − Σ_c y^{t2i}_{bc} log softmax_c s(t_b, v_c) ]`,

    averaged over the rows `b`. Similarities and softmax run in float32 (`scaled_similarity`).

    Args:
        image_embeds, text_embeds: this rank's features `[B, P]` (the rows).
        image_candidates, text_candidates: the columns `[C, P]`, e.g. the gathered global batch (with gradient) or
            the teacher's features and the queue.
        temperature: τ, a scalar tensor.
        image_to_text_targets, text_to_image_targets: target distributions `[B, C]` (see `contrastive_targets`).
        extra_image_to_text_logits: `[B, K]` logits of each image against texts of its own that are negatives only
            for it (caption hard negatives, `caption_negative_logits`): more columns of its row's softmax, with
            target 0.

    Returns:
        The loss and the image-to-text logits `[B, C]` over the candidates.
    """
    logits_per_image = scaled_similarity(image_embeds, text_candidates, temperature)
    logits_per_text = scaled_similarity(text_embeds, image_candidates, temperature)
    image_rows = logits_per_image
    if extra_image_to_text_logits is not None:
        image_rows = torch.cat([logits_per_image, extra_image_to_text_logits.float()], dim=1)
        image_to_text_targets = F.pad(image_to_text_targets, (0, extra_image_to_text_logits.shape[1]))
    loss_i2t = -(image_to_text_targets * image_rows.log_softmax(dim=-1)).sum(dim=-1).mean()
    loss_t2i = -(text_to_image_targets * logits_per_text.log_softmax(dim=-1)).sum(dim=-1).mean()
    return (loss_i2t + loss_t2i) / 2, logits_per_image


def caption_negative_logits(
    image_embeds: torch.Tensor, negative_embeds: torch.Tensor, valid: torch.Tensor, temperature: torch.Tensor
) -> torch.Tensor:
    """`s(v_b, t⁻_bk) = v_bᵀ t⁻_bk / τ` `[B, K]` of each image against its own caption negatives `[B, K, P]`, in
    float32; a missing negative (`valid` false) gets the smallest float, so that it takes no probability (and a
    target of 0 times its log-probability stays 0, where −∞ would give NaN)."""
    with torch.autocast(device_type=image_embeds.device.type, enabled=False):
        logits = torch.einsum("bp,bkp->bk", image_embeds.float(), negative_embeds.float()) / temperature.float()
    return logits.masked_fill(~valid, torch.finfo(logits.dtype).min)


# --------------------------------------------------------------------------------------------------------------------
# ITM
# --------------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def sample_hard_negatives(
    logits: torch.Tensor, positive_mask: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw one hard negative per row with probability `softmax(logits)` over the non-positive columns.

    Positives are excluded by setting their logits to −∞ before the softmax (no epsilon), so a positive is never
    drawn; all rows are sampled in one `torch.multinomial` call, without a host-device sync. A row whose columns
    are all positives (e.g. a batch of one image with several captions) has no negative: it draws column 0 and is
    reported in `has_negative` so that the caller can ignore it.

    Args:
        logits: `[R, C]` similarities (e.g. ITC logits of the global batch).
        positive_mask: `[R, C]` booleans, `True` where column `c` is a positive of row `r`.
        generator: source of randomness (on the device of `logits`), for reproducible draws.

    Returns:
        `(indices [R], has_negative [R])`.
    """
    has_negative = ~positive_mask.all(dim=1)
    # Non-finite similarities (a diverged step or a corrupt batch) draw uniformly instead of failing inside
    # `multinomial`: that step's loss is not finite anyway, and the training loop skips it.
    finite = torch.nan_to_num(logits.float(), nan=0.0, posinf=0.0, neginf=0.0)
    masked = finite.masked_fill(positive_mask, float("-inf"))
    masked = torch.where(has_negative[:, None], masked, torch.zeros_like(masked))
    probabilities = masked.softmax(dim=-1)
    return torch.multinomial(probabilities, 1, generator=generator).squeeze(1), has_negative


class ItmNegatives(NamedTuple):
    """Hard negatives of every pair of the global batch (see `sample_itm_negatives`), each `[N]`."""

    texts: torch.Tensor
    images: torch.Tensor
    image_has_negative: torch.Tensor
    text_has_negative: torch.Tensor


@torch.no_grad()
def sample_itm_negatives(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    temperature: torch.Tensor,
    pair_ids: torch.Tensor,
    generator: torch.Generator | None = None,
) -> ItmNegatives:
    """For each pair `n` of the global batch, a hard negative text for its image and a hard negative image for its
    text, drawn with probability `softmax(s/τ)` of the float32 ITC similarity `s` (`scaled_similarity`) among the
    pairs with another id (`sample_hard_negatives`).

    Args:
        image_embeds, text_embeds: `[N, P]` ITC features of the global batch.
        temperature: τ.
        pair_ids: `[N]` image ids; pairs sharing one are positives of each other, never negatives.
        generator: source of the draws.
    """
    logits = scaled_similarity(image_embeds, text_embeds, temperature)
    positives = pair_ids[:, None] == pair_ids[None, :]
    texts, image_has_negative = sample_hard_negatives(logits, positives, generator)
    images, text_has_negative = sample_hard_negatives(logits.t(), positives.t(), generator)
    return ItmNegatives(texts, images, image_has_negative, text_has_negative)


def itm_labels(batch_size: int, image_has_negative: torch.Tensor, text_has_negative: torch.Tensor) -> torch.Tensor:
    """Labels `[3B]` of the ITM views in the order positives, (image, negative text), (negative image, text):
    1 = matched, 0 = not, −100 where no negative existed."""
    ones = torch.ones(batch_size, dtype=torch.long, device=image_has_negative.device)
    return torch.cat([ones, torch.where(image_has_negative, 0, -100), torch.where(text_has_negative, 0, -100)])


def image_text_matching_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """ITM: cross-entropy of the 2-way matched / not-matched logits `[N, 2]` against `labels` `[N]` (1 = matched,
    0 = not, −100 = ignored), averaged over the pairs that count."""
    return F.cross_entropy(logits.float(), labels, ignore_index=-100)


# --------------------------------------------------------------------------------------------------------------------
# MLM, MIM, MRM
# --------------------------------------------------------------------------------------------------------------------


def masked_language_modeling_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """MLM: `L = −(1/|M_t|) Σ_{i ∈ M_t} log p(t_i | I, T̃)` over the masked tokens only.

    Args:
        logits: `[M, vocab]` vocabulary logits at the masked positions.
        labels: `[M]` original token ids.

    Returns:
        The loss (averaged over the masked tokens of all ranks, see `distributed_mean`) and the accuracy.
    """
    total = F.cross_entropy(logits.float(), labels, reduction="sum")
    count = torch.tensor(labels.numel(), device=logits.device)
    accuracy = (logits.argmax(dim=-1) == labels).float().mean() if labels.numel() else logits.new_zeros(())
    return distributed_mean(total, count), accuracy


def masked_image_modeling_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MIM: `L = (1/|M_v|) Σ_{p ∈ M_v} (1/D) ‖ ŷ_p − v̄_p ‖₁`, the L1 distance to the teacher's patch features.

    Args:
        predicted: `[M, D]` predictions at the masked patches.
        target: `[M, D]` teacher image-encoder features `v̄` of the clean image at the same patches.
    """
    total = (predicted.float() - target.float()).abs().mean(dim=-1).sum()
    return distributed_mean(total, torch.tensor(predicted.shape[0], device=predicted.device))


def masked_representation_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MRM: `L = (1/|M|) Σ_{i ∈ M} (1/D) ‖ g(f_θ(x̃)_i) − h_i ‖²`, the squared error to the teacher's fusion states.

    Args:
        predicted: `[M, D]` predictor outputs `g(·)` at the masked positions.
        target: `[M, D]` teacher fusion outputs `h` of the clean pair at the same positions.
    """
    total = (predicted.float() - target.float()).pow(2).mean(dim=-1).sum()
    return distributed_mean(total, torch.tensor(predicted.shape[0], device=predicted.device))


def normalized_target(target: torch.Tensor) -> torch.Tensor:
    """A parameter-free LayerNorm of each target vector `[..., D]`, in float32: `LN(x) = (x − mean(x)) / std(x)`."""
    return F.layer_norm(target.float(), target.shape[-1:])


def representation_targets(
    layer_states: tuple[torch.Tensor, ...], num_layers: int, normalize: bool = False
) -> torch.Tensor:
    """MRM target `h`: the last fusion layer, or with `num_layers = K > 1` the average of the top-K layers, each
    normalised by a parameter-free LayerNorm (data2vec): `h = (1/K) Σ_{l > L−K} LN(h^l)`. With `normalize`, the
    single last layer is normalised too."""
    if num_layers == 1 and not normalize:
        return layer_states[-1]
    return torch.stack([normalized_target(state) for state in layer_states[-num_layers:]]).mean(dim=0)


__all__ = [
    "JointMasking",
    "caption_negative_logits",
    "contrastive_targets",
    "corrupt_text",
    "distributed_mean",
    "gather_with_grad",
    "gather_without_grad",
    "image_mask_to_indices",
    "image_text_contrastive_loss",
    "image_text_matching_loss",
    "itm_labels",
    "ItmNegatives",
    "masked_image_modeling_loss",
    "masked_language_modeling_loss",
    "masked_representation_loss",
    "normalized_target",
    "pad_to_length",
    "representation_targets",
    "sample_hard_negatives",
    "sample_image_mask",
    "sample_itm_negatives",
    "sample_text_mask",
    "scaled_similarity",
    "world_size_and_rank",
]
