"""Each objective and each masking function against a direct, slow reference on small random tensors."""

import math

import pytest
import torch

from mamo_hf.losses_mamo import (
    caption_negative_logits,
    contrastive_targets,
    corrupt_text,
    distributed_mean,
    gather_with_grad,
    gather_without_grad,
    image_mask_to_indices,
    image_text_contrastive_loss,
    image_text_matching_loss,
    masked_image_modeling_loss,
    masked_language_modeling_loss,
    masked_representation_loss,
    pad_to_length,
    representation_targets,
    sample_hard_negatives,
    sample_image_mask,
    sample_itm_negatives,
    sample_text_mask,
    scaled_similarity,
)


def normalised(*shape, seed=0):
    return torch.nn.functional.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


# ----------------------------------------------------------------------------------------------------------------
# ITC
# ----------------------------------------------------------------------------------------------------------------


def reference_itc(image, text, image_candidates, text_candidates, temperature, targets_i2t, targets_t2i):
    total = 0.0
    for row in range(image.shape[0]):
        scores_i2t = [math.exp(float(image[row] @ candidate) / temperature) for candidate in text_candidates]
        scores_t2i = [math.exp(float(text[row] @ candidate) / temperature) for candidate in image_candidates]
        for column in range(len(scores_i2t)):
            total -= float(targets_i2t[row, column]) * math.log(scores_i2t[column] / sum(scores_i2t)) / 2
            total -= float(targets_t2i[row, column]) * math.log(scores_t2i[column] / sum(scores_t2i)) / 2
    return total / image.shape[0]


def test_itc_matches_reference_with_one_positive_per_row():
    image, text = normalised(4, 8, seed=0), normalised(4, 8, seed=1)
    targets = contrastive_targets(torch.eye(4, dtype=torch.bool))
    loss, logits = image_text_contrastive_loss(image, text, image, text, torch.tensor(0.07), targets, targets)
    expected = reference_itc(image, text, image, text, 0.07, targets, targets)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    torch.testing.assert_close(logits, image @ text.t() / 0.07)


def test_itc_matches_reference_with_repeated_images_candidates_and_distillation():
    image, text = normalised(3, 8, seed=2), normalised(3, 8, seed=3)
    image_candidates = torch.cat([image, normalised(5, 8, seed=4)])  # e.g. the batch followed by a queue
    text_candidates = torch.cat([text, normalised(5, 8, seed=5)])
    positives = torch.zeros(3, 8, dtype=torch.bool)
    positives[0, [0, 1]] = positives[1, [0, 1]] = positives[2, 2] = True  # pairs 0 and 1 show the same image
    soft = torch.softmax(torch.randn(3, 8, generator=torch.Generator().manual_seed(6)), dim=-1)
    targets = contrastive_targets(positives, soft, alpha=0.4)
    torch.testing.assert_close(targets.sum(-1), torch.ones(3))
    assert targets[0, 0].item() == pytest.approx(0.6 * 0.5 + 0.4 * soft[0, 0].item())
    loss, _ = image_text_contrastive_loss(
        image, text, image_candidates, text_candidates, torch.tensor(0.1), targets, targets
    )
    expected = reference_itc(image, text, image_candidates, text_candidates, 0.1, targets, targets)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_itc_gradient_reaches_temperature_and_features():
    image, text = normalised(4, 8).requires_grad_(), normalised(4, 8, seed=1).requires_grad_()
    temperature = torch.tensor(0.07, requires_grad=True)
    targets = contrastive_targets(torch.eye(4, dtype=torch.bool))
    loss, _ = image_text_contrastive_loss(image, text, image, text, temperature, targets, targets)
    loss.backward()
    assert image.grad.abs().sum() > 0 and text.grad.abs().sum() > 0 and temperature.grad != 0


# ----------------------------------------------------------------------------------------------------------------
# Hard negatives and ITM
# ----------------------------------------------------------------------------------------------------------------


def test_hard_negatives_follow_softmax_and_never_hit_a_positive():
    logits = torch.tensor([[3.0, 1.0, 0.0, 2.0], [0.5, 4.0, 0.5, 0.0], [1.0, 1.0, 1.0, 1.0]])
    positives = torch.tensor([[True, False, False, False], [False, True, False, False], [False, False, True, True]])
    generator = torch.Generator().manual_seed(0)
    draws = torch.stack([sample_hard_negatives(logits, positives, generator)[0] for _ in range(4000)])
    assert not positives.gather(1, draws.t()).any()
    for row in range(3):
        allowed = ~positives[row]
        expected = torch.zeros(4)
        expected[allowed] = torch.softmax(logits[row][allowed], dim=0)
        frequencies = torch.bincount(draws[:, row], minlength=4).float() / draws.shape[0]
        torch.testing.assert_close(frequencies, expected, atol=0.03, rtol=0)


def test_hard_negatives_with_batch_of_two_and_repeated_images():
    generator = torch.Generator().manual_seed(1)
    two = torch.eye(2, dtype=torch.bool)
    for _ in range(50):
        indices, has_negative = sample_hard_negatives(torch.randn(2, 2, generator=generator), two, generator)
        assert indices.tolist() == [1, 0] and has_negative.all()
    image_ids = torch.tensor([7, 7, 3, 7])  # three captions of one image, one of another
    positives = image_ids[:, None] == image_ids[None, :]
    for _ in range(50):
        indices, has_negative = sample_hard_negatives(torch.randn(4, 4, generator=generator), positives, generator)
        assert indices[[0, 1, 3]].tolist() == [2, 2, 2] and has_negative.all()
    single_image = torch.ones(3, 3, dtype=torch.bool)
    _, has_negative = sample_hard_negatives(torch.randn(3, 3), single_image, generator)
    assert not has_negative.any()


def test_hard_negatives_are_one_batched_draw_without_host_sync(monkeypatch):
    calls = []
    real_multinomial = torch.multinomial
    monkeypatch.setattr(
        torch, "multinomial", lambda *args, **kwargs: calls.append(1) or real_multinomial(*args, **kwargs)
    )
    for name in ("item", "tolist", "__bool__", "nonzero"):
        monkeypatch.setattr(torch.Tensor, name, lambda *args, **kwargs: pytest.fail(f"host sync through {name}"))
    sample_hard_negatives(torch.randn(16, 16), torch.eye(16, dtype=torch.bool))
    assert len(calls) == 1


def test_itm_loss_matches_reference_and_ignores_missing_negatives():
    logits = torch.randn(6, 2, generator=torch.Generator().manual_seed(3))
    labels = torch.tensor([1, 1, 0, -100, 0, 0])
    expected = -sum(torch.log_softmax(logits[i], -1)[labels[i]] for i in range(6) if labels[i] >= 0) / 5
    assert image_text_matching_loss(logits, labels).item() == pytest.approx(expected.item(), rel=1e-6)


# ----------------------------------------------------------------------------------------------------------------
# MLM, MIM, MRM
# ----------------------------------------------------------------------------------------------------------------


def test_mlm_loss_and_accuracy_match_reference():
    logits = torch.randn(5, 11, generator=torch.Generator().manual_seed(4))
    labels = torch.tensor([3, 0, 10, 7, 7])
    loss, accuracy = masked_language_modeling_loss(logits, labels)
    expected = -sum(torch.log_softmax(logits[i], -1)[labels[i]] for i in range(5)) / 5
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert accuracy.item() == pytest.approx(sum(int(logits[i].argmax() == labels[i]) for i in range(5)) / 5)


def test_mim_and_mrm_losses_match_reference():
    generator = torch.Generator().manual_seed(5)
    predicted, target = torch.randn(6, 4, generator=generator), torch.randn(6, 4, generator=generator)
    l1 = sum(abs(float(predicted[i, d] - target[i, d])) for i in range(6) for d in range(4)) / (6 * 4)
    squared = sum(float(predicted[i, d] - target[i, d]) ** 2 for i in range(6) for d in range(4)) / (6 * 4)
    assert masked_image_modeling_loss(predicted, target).item() == pytest.approx(l1, rel=1e-6)
    assert masked_representation_loss(predicted, target).item() == pytest.approx(squared, rel=1e-6)


def test_representation_targets_top_k_average_of_normalised_layers():
    generator = torch.Generator().manual_seed(6)
    layers = tuple(torch.randn(2, 3, 8, generator=generator) * (index + 1) for index in range(4))
    assert representation_targets(layers, 1) is layers[-1]

    def plain_layer_norm(x):
        return (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + 1e-5)

    expected = (plain_layer_norm(layers[2]) + plain_layer_norm(layers[3])) / 2
    torch.testing.assert_close(representation_targets(layers, 2), expected, atol=1e-5, rtol=1e-5)


def test_single_process_collectives_are_identities():
    tensor = torch.randn(3, 4, requires_grad=True)
    assert gather_with_grad(tensor) is tensor
    torch.testing.assert_close(gather_without_grad(tensor), tensor.detach())
    assert distributed_mean(torch.tensor(6.0), torch.tensor(4)).item() == 1.5
    assert pad_to_length(torch.ones(2, 3), 5).tolist() == [[1, 1, 1, 0, 0]] * 2


# ----------------------------------------------------------------------------------------------------------------
# Masking
# ----------------------------------------------------------------------------------------------------------------


def test_image_mask_counts_are_exact_and_seeded():
    mask = sample_image_mask(5, 16, 0.75, torch.Generator().manual_seed(0))
    assert mask.dtype == torch.bool and mask.sum(1).tolist() == [12] * 5
    assert torch.equal(mask, sample_image_mask(5, 16, 0.75, torch.Generator().manual_seed(0)))
    assert not torch.equal(mask, sample_image_mask(5, 16, 0.75, torch.Generator().manual_seed(1)))
    assert sample_image_mask(2, 196, 0.75).sum(1).tolist() == [147, 147]  # round(0.75 * 196)
    visible, masked = image_mask_to_indices(mask)
    assert visible.shape == (5, 4) and masked.shape == (5, 12)
    for row in range(5):
        assert visible[row].tolist() == sorted((~mask[row]).nonzero().flatten().tolist())
        assert masked[row].tolist() == sorted(mask[row].nonzero().flatten().tolist())
    with pytest.raises(ValueError, match="same number of patches"):
        image_mask_to_indices(torch.tensor([[True, False], [True, True]]))


SPECIAL = [0, 2, 3, 4]  # [PAD], [CLS], [SEP], [MASK]


def caption_batch():
    input_ids = torch.tensor(
        [
            [2, 10, 11, 12, 13, 14, 15, 16, 3],
            [2, 10, 11, 3, 0, 0, 0, 0, 0],
            [2, 20, 3, 0, 0, 0, 0, 0, 0],
            [2, 10, 11, 12, 13, 3, 0, 0, 0],
        ]
    )
    return input_ids, (input_ids != 0).long()


def test_text_mask_spares_special_tokens_and_masks_at_least_one_word():
    input_ids, attention_mask = caption_batch()
    for seed in range(20):
        mask = sample_text_mask(input_ids, attention_mask, SPECIAL, 0.25, torch.Generator().manual_seed(seed))
        assert not mask[torch.isin(input_ids, torch.tensor(SPECIAL))].any()
        words = [7, 2, 1, 4]
        assert mask.sum(1).tolist() == [max(1, round(0.25 * n)) for n in words]  # [2, 1, 1, 1]
    first = sample_text_mask(input_ids, attention_mask, SPECIAL, 0.25, torch.Generator().manual_seed(3))
    again = sample_text_mask(input_ids, attention_mask, SPECIAL, 0.25, torch.Generator().manual_seed(3))
    assert torch.equal(first, again)


def test_corrupt_text_all_mask_by_default_and_80_10_10_on_request():
    input_ids, attention_mask = caption_batch()
    mask = sample_text_mask(input_ids, attention_mask, SPECIAL, 0.5, torch.Generator().manual_seed(0))
    corrupted = corrupt_text(input_ids, mask, mask_token_id=4, vocab_size=30)
    assert (corrupted[mask] == 4).all() and torch.equal(corrupted[~mask], input_ids[~mask])

    many = torch.randint(5, 30, (400, 50), generator=torch.Generator().manual_seed(1))
    everything = torch.ones_like(many, dtype=torch.bool)
    corrupted = corrupt_text(
        many, everything, 4, 30, random_ratio=0.1, keep_ratio=0.1, generator=torch.Generator().manual_seed(2)
    )
    masked_share = (corrupted == 4).float().mean().item()
    kept_share = (corrupted == many).float().mean().item()
    assert masked_share == pytest.approx(0.8, abs=0.01)
    assert kept_share == pytest.approx(0.1 + 0.1 / 30, abs=0.01)  # kept, plus random draws of the same token


# ----------------------------------------------------------------------------------------------------------------
# Precision under autocast
# ----------------------------------------------------------------------------------------------------------------


def test_itc_logits_and_negative_sampling_stay_float32_under_bf16_autocast():
    image, text, temperature = normalised(16, 32), normalised(16, 32, seed=1), torch.tensor(0.01)
    reference = scaled_similarity(image, text, temperature)
    targets = contrastive_targets(torch.eye(16, dtype=torch.bool))
    reference_loss, _ = image_text_contrastive_loss(image, text, image, text, temperature, targets, targets)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        naive = image @ text.t() / temperature  # what the loss computed before: a bf16 product
        logits = scaled_similarity(image, text, temperature)
        loss, loss_logits = image_text_contrastive_loss(image, text, image, text, temperature, targets, targets)
        negatives = sample_itm_negatives(image, text, temperature, torch.arange(16), torch.Generator().manual_seed(0))
    assert naive.dtype == torch.bfloat16 and (naive.float() - reference).abs().max() > 0.1  # the error it avoids
    assert logits.dtype == loss_logits.dtype == torch.float32
    assert torch.equal(logits, reference) and torch.equal(loss_logits, reference)
    torch.testing.assert_close(loss, reference_loss, rtol=0, atol=0)
    expected = sample_itm_negatives(image, text, temperature, torch.arange(16), torch.Generator().manual_seed(0))
    assert torch.equal(negatives.texts, expected.texts) and torch.equal(negatives.images, expected.images)


# --------------------------------------------------------------------------------------------------------------------
# Caption negatives in ITC's softmax
# --------------------------------------------------------------------------------------------------------------------


def test_caption_negatives_enter_the_itc_softmax_of_their_own_image_only():
    image, text = torch.nn.functional.normalize(torch.randn(2, 2, 8), dim=-1)
    negatives = torch.nn.functional.normalize(torch.randn(2, 3, 8), dim=-1)
    valid = torch.tensor([[True, True, False], [True, False, False]])
    temperature = torch.tensor(0.1)
    extra = caption_negative_logits(image, negatives, valid, temperature)
    targets = torch.eye(2)
    loss, _ = image_text_contrastive_loss(image, text, image, text, temperature, targets, targets, extra)
    # Reference: image b's row holds every text of the batch and its own existing negatives.
    i2t = []
    for b in range(2):
        logits = torch.cat([image[b] @ text.t(), image[b] @ negatives[b][valid[b]].t()]) / temperature
        i2t.append(-logits.log_softmax(-1)[b])
    t2i = [-(text[b] @ image.t() / temperature).log_softmax(-1)[b] for b in range(2)]
    torch.testing.assert_close(loss, (torch.stack(i2t).mean() + torch.stack(t2i).mean()) / 2)
    assert torch.isfinite(loss)
