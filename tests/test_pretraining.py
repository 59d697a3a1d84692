"""MamoForPreTraining: pass plan, teacher, masks, hard negatives, caption negatives, queue, Trainer."""

import pytest
import torch
from helpers import build, random_pairs, setup_with_negatives, teacher_matches_student, tiny_config
from transformers import AutoModel, AutoModelForPreTraining, Trainer, TrainingArguments

from mamo_hf import MamoForPreTraining, MamoModel
from mamo_hf.data import DemoCaptionDataset
from mamo_hf.modeling_mamo import gather_patches as mamo_gather_patches

OBJECTIVES = ("itc", "itm", "mlm", "mim", "mrm")


def step_inputs(model, batch_size=4, seed=0):
    batch = random_pairs(model.config, batch_size=batch_size, seed=seed)
    return {**batch, "generator": torch.Generator().manual_seed(seed)}


def count_calls(modules):
    counts = {name: 0 for name in modules}

    def hook(name):
        def record(*_):
            counts[name] += 1

        return record

    for name, module in modules.items():
        module.register_forward_hook(hook(name))
    return counts


# ----------------------------------------------------------------------------------------------------------------
# Losses and the pass plan
# ----------------------------------------------------------------------------------------------------------------


def test_every_objective_is_computed_and_the_total_is_their_weighted_sum():
    model = build(itc_weight=1.0, itm_weight=0.5, mlm_weight=2.0, mim_weight=1.0, mrm_weight=0.25).train()
    outputs = model(**step_inputs(model))
    weights = {"itc": 1.0, "itm": 0.5, "mlm": 2.0, "mim": 1.0, "mrm": 0.25}
    expected = sum(weights[name] * getattr(outputs, f"loss_{name}") for name in OBJECTIVES)
    torch.testing.assert_close(outputs.loss, expected)
    assert all(
        torch.isfinite(getattr(outputs, f"loss_{name}")) and getattr(outputs, f"loss_{name}") > 0
        for name in OBJECTIVES
    )
    assert outputs.itm_logits.shape == (12, 2) and outputs.itm_labels.tolist() == [1] * 4 + [0] * 8
    assert outputs.logits_per_image.shape == (4, 4) and 0 <= outputs.mlm_accuracy <= 1


def test_pass_plan_runs_each_encoder_once_per_distinct_input():
    model = build().train()
    student = count_calls(
        {"image": model.mamo.image_encoder, "text": model.mamo.text_encoder, "fusion": model.mamo.fusion_encoder}
    )
    teacher = count_calls(
        {
            "image": model.teacher.image_encoder,
            "text": model.teacher.text_encoder,
            "fusion": model.teacher.fusion_encoder,
        }
    )
    batch = step_inputs(model)
    fusion_batch = []
    model.mamo.fusion_encoder.register_forward_hook(lambda module, args, output: fusion_batch.append(args[0].shape))
    model(**batch)
    # I and Ĩ, T and T̃; one fusion call for (I,T), 2 negatives per pair, (Ĩ,T) and (I,T̃).
    assert student == {"image": 2, "text": 2, "fusion": 1}
    assert teacher == {"image": 1, "text": 1, "fusion": 1}
    assert fusion_batch[0][0] == 5 * 4


def test_masked_image_pass_only_sees_visible_patches_and_mlm_logits_only_masked_tokens():
    model = build()
    image_lengths, mlm_rows = [], []
    model.mamo.image_encoder.register_forward_hook(lambda m, a, output: image_lengths.append(output[0].shape[1]))
    model.mlm_head.decoder.register_forward_hook(lambda m, args, output: mlm_rows.append(output.shape))
    batch = step_inputs(model)
    text_mask = model.masking.text_mask(batch["input_ids"], batch["attention_mask"], torch.Generator().manual_seed(1))
    model(**batch, text_mask=text_mask)
    assert sorted(image_lengths) == [1 + 4, 1 + 16]  # 75% of 16 patches dropped
    assert mlm_rows == [(int(text_mask.sum()), model.config.text_config.vocab_size)]


@pytest.mark.parametrize("disabled", OBJECTIVES)
def test_a_zero_weight_skips_the_objective(disabled):
    model = build(**{f"{disabled}_weight": 0.0})
    heads = {"itm": model.itm_head, "mlm": model.mlm_head, "mim": model.mim_predictor, "mrm": model.mrm_predictor}
    calls = count_calls({**heads, "teacher": model.teacher.image_encoder})
    outputs = model(**step_inputs(model))
    assert getattr(outputs, f"loss_{disabled}") is None
    assert all(getattr(outputs, f"loss_{name}") is not None for name in OBJECTIVES if name != disabled)
    if disabled in heads:
        assert calls[disabled] == 0


def test_itc_only_runs_no_teacher_no_fusion_and_no_masked_views():
    model = build(itm_weight=0.0, mlm_weight=0.0, mim_weight=0.0, mrm_weight=0.0)
    calls = count_calls(
        {
            "teacher": model.teacher,
            "fusion": model.mamo.fusion_encoder,
            "image": model.mamo.image_encoder,
            "text": model.mamo.text_encoder,
        }
    )
    outputs = model(**step_inputs(model))
    assert calls == {"teacher": 0, "fusion": 0, "image": 1, "text": 1}
    torch.testing.assert_close(outputs.loss, outputs.loss_itc)


def test_explicit_masks_and_seeded_generators_are_reproducible():
    model = build().eval()
    first = model(**step_inputs(model, seed=3))
    again = model(**step_inputs(model, seed=3))
    other = model(**step_inputs(model, seed=3) | {"generator": torch.Generator().manual_seed(4)})
    for name in OBJECTIVES:
        torch.testing.assert_close(getattr(first, f"loss_{name}"), getattr(again, f"loss_{name}"), atol=0, rtol=0)
    assert not torch.equal(first.loss_mlm, other.loss_mlm)

    batch = random_pairs(model.config, seed=3)
    image_mask = torch.zeros(4, 16, dtype=torch.bool)
    image_mask[:, 4:] = True
    text_mask = torch.zeros_like(batch["input_ids"], dtype=torch.bool)
    text_mask[:, 1] = True
    explicit = [
        model(**batch, image_mask=image_mask, text_mask=text_mask, generator=torch.Generator().manual_seed(9))
        for _ in range(2)
    ]
    torch.testing.assert_close(explicit[0].loss, explicit[1].loss, atol=0, rtol=0)
    with pytest.raises(ValueError, match="same number of patches"):
        uneven = image_mask.clone()
        uneven[0, 3] = True
        model(**batch, image_mask=uneven)


# ----------------------------------------------------------------------------------------------------------------
# Teacher
# ----------------------------------------------------------------------------------------------------------------


def test_teacher_is_frozen_in_eval_mode_and_gets_no_gradient():
    model = build().train()
    assert not model.teacher.training and model.mamo.training
    model(**step_inputs(model)).loss.backward()
    assert all(parameter.grad is None for parameter in model.teacher.parameters())
    assert all(not parameter.requires_grad for parameter in model.teacher.parameters())
    assert all(parameter.grad is not None for parameter in model.mamo.parameters())


def test_teacher_is_not_among_trainer_optimizer_parameters(tmp_path):
    model = build()
    trainer = Trainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True))
    trainer.create_optimizer()
    optimized = {id(parameter) for group in trainer.optimizer.param_groups for parameter in group["params"]}
    assert not optimized & {id(parameter) for parameter in model.teacher.parameters()}
    assert {id(parameter) for parameter in model.mamo.parameters()} <= optimized


def test_update_teacher_applies_the_ema_formula():
    model = build(momentum=0.9)
    assert teacher_matches_student(model)
    with torch.no_grad():
        for parameter in model.mamo.parameters():
            parameter.add_(torch.randn_like(parameter))
    before = [parameter.clone() for parameter in model.teacher.parameters()]
    model.update_teacher()
    for old, new, student in zip(before, model.teacher.parameters(), model.mamo.parameters()):
        torch.testing.assert_close(new, 0.9 * old + 0.1 * student)


def test_teacher_starts_as_the_student_after_loading_a_base_checkpoint(tmp_path):
    torch.manual_seed(1)
    base = MamoModel(tiny_config())
    base.save_pretrained(tmp_path)
    model = MamoForPreTraining.from_pretrained(tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(model.mamo.parameters(), base.parameters()))
    assert teacher_matches_student(model)
    assert not any(parameter.requires_grad for parameter in model.teacher.parameters())
    assert type(AutoModelForPreTraining.from_pretrained(tmp_path)) is MamoForPreTraining


def test_pretraining_checkpoint_keeps_teacher_and_queue(tmp_path):
    model = build(queue_size=8).train()
    model(**step_inputs(model))  # enqueue 4 teacher features
    with torch.no_grad():
        for parameter in model.teacher.parameters():
            parameter.mul_(0.5)  # a teacher that differs from its student
    model.save_pretrained(tmp_path)
    reloaded = MamoForPreTraining.from_pretrained(tmp_path)
    for (name, saved), loaded in zip(model.state_dict().items(), reloaded.state_dict().values()):
        torch.testing.assert_close(loaded, saved, atol=0, rtol=0, msg=name)
    assert reloaded.queue_pointer.item() == 4 and not teacher_matches_student(reloaded)
    base = AutoModel.from_pretrained(tmp_path)  # the student alone, teacher and heads ignored
    assert type(base) is MamoModel
    assert all(torch.equal(a, b) for a, b in zip(base.parameters(), model.mamo.parameters()))


# ----------------------------------------------------------------------------------------------------------------
# Queue, hard negatives with repeated images
# ----------------------------------------------------------------------------------------------------------------


def test_queue_receives_teacher_features_and_wraps_around():
    model = build(queue_size=6, distill_alpha=0.4).train()
    batch = step_inputs(model)
    outputs = model(**batch)
    assert outputs.logits_per_image.shape == (4, 4 + 6)
    with torch.no_grad():
        teacher_features = model.teacher.get_image_features(batch["pixel_values"]).pooler_output
    torch.testing.assert_close(model.image_queue[:4], teacher_features)
    model(**step_inputs(model, seed=1))
    assert model.queue_pointer.item() == 2  # 8 features written into 6 slots
    model.eval()
    model(**step_inputs(model, seed=2))
    assert model.queue_pointer.item() == 2  # evaluation does not enqueue
    without_itc = build(queue_size=6, itc_weight=0.0, mim_weight=0.0, mrm_weight=0.0).train()
    without_itc(**step_inputs(without_itc))
    assert without_itc.queue_pointer.item() == 0  # the queue only serves ITC


def test_repeated_images_are_positives_and_never_negatives():
    model = build()
    batch = step_inputs(model, batch_size=2)
    outputs = model(**batch, image_ids=torch.tensor([5, 5]))  # two captions of one image: no negative exists
    assert outputs.itm_labels.tolist() == [1, 1, -100, -100, -100, -100]
    assert torch.isfinite(outputs.loss_itm)
    outputs = model(**step_inputs(model, batch_size=2))
    assert outputs.itm_labels.tolist() == [1, 1, 0, 0, 0, 0]


def test_bad_inputs_raise():
    model = build()
    batch = step_inputs(model)
    with pytest.raises(ValueError, match="same batch size"):
        model(**batch | {"pixel_values": batch["pixel_values"][:2]})
    with pytest.raises(ValueError, match="channels"):
        model(**batch | {"pixel_values": batch["pixel_values"][:, :1]})


@pytest.mark.parametrize("model_class", [MamoModel, MamoForPreTraining])
@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda batch: {"attention_mask": batch["attention_mask"][:, :-1]}, "`attention_mask` has shape \\(4, 8\\)"),
        (lambda batch: {"pixel_values": (batch["pixel_values"] * 50 + 128).clamp(0, 255).to(torch.uint8)}, "uint8"),
        (lambda batch: {name: value[:0] for name, value in batch.items()}, "Empty batch"),
        (lambda batch: {"input_ids": batch["input_ids"].clone().index_fill_(1, torch.tensor([1]), 10_000)}, "10000"),
        (lambda batch: {"input_ids": batch["input_ids"].float()}, "integer token ids"),
    ],
)
def test_malformed_inputs_raise_a_value_error_naming_the_problem(model_class, change, message):
    model = model_class(tiny_config())
    batch = random_pairs(model.config, batch_size=4, length=9)
    with pytest.raises(ValueError, match=message):
        model(**batch | change(batch))


# ----------------------------------------------------------------------------------------------------------------
# Review fixes and recipe options (issue 9)
# ----------------------------------------------------------------------------------------------------------------


def test_a_freshly_built_or_loaded_model_has_its_teacher_in_eval_mode(tmp_path):
    model = build()  # no .train() / .eval() call
    assert model.mamo.training and not any(module.training for module in model.teacher.modules())
    model.save_pretrained(tmp_path)
    loaded = MamoForPreTraining.from_pretrained(tmp_path).train()
    assert not any(module.training for module in loaded.teacher.modules())


def test_the_loss_is_the_weighted_sum_of_one_method_per_objective():
    model = build(itm_weight=0.5, mrm_weight=2.0).train()
    inputs = step_inputs(model)
    outputs = model(**inputs)
    inputs["generator"] = torch.Generator().manual_seed(0)
    views = model.encode_views(
        **{name: inputs[name] for name in ("pixel_values", "input_ids", "attention_mask")},
        generator=inputs["generator"],
    )
    expected = (
        model.itc_loss(views).loss
        + 0.5 * model.itm_loss(views).loss
        + model.mlm_loss(views).loss
        + model.mim_loss(views).loss
        + 2.0 * model.mrm_loss(views).loss
    )
    torch.testing.assert_close(outputs.loss, expected, rtol=0, atol=0)


def test_itm_negatives_carry_gradient_into_the_encoders_only_when_asked():
    itm_only = {"itc_weight": 0.0, "mlm_weight": 0.0, "mim_weight": 0.0, "mrm_weight": 0.0}
    gradients, losses = {}, {}
    for flag in (True, False):
        model = build(itm_negative_gradient=flag, **itm_only).train()
        states = {}

        def keep_text_states(module, args, output, states=states):
            states["text"] = output.last_hidden_state

        model.mamo.text_encoder.register_forward_hook(keep_text_states)
        outputs = model(**step_inputs(model, batch_size=6))
        states["text"].retain_grad()
        outputs.loss.backward()
        losses[flag], gradients[flag] = outputs.loss.detach(), states["text"].grad
        negative_texts = outputs.itm_labels[6:12] == 0  # rows of (image, negative text)
        assert negative_texts.all()
    torch.testing.assert_close(losses[True], losses[False], rtol=0, atol=0)  # the forward is the same
    # ALBEF's way adds the gradient that flows back through each sampled negative text.
    assert not torch.allclose(gradients[True], gradients[False])
    assert (gradients[True] - gradients[False]).abs().sum(dim=(1, 2)).gt(0).any()


def test_normalized_targets_regress_the_layer_normalized_teacher_features():
    plain, normalized = build(), build(normalize_targets=True)
    with torch.no_grad():  # a trained final LayerNorm: targets no longer have zero mean and unit variance
        plain.teacher.image_encoder.layernorm.weight.mul_(3.0).add_(0.5)
        plain.teacher.image_encoder.layernorm.bias.add_(1.0)
        for norm in plain.teacher.fusion_encoder.modules():  # the same for the fusion states MRM regresses
            if isinstance(norm, torch.nn.LayerNorm):
                norm.weight.mul_(3.0).add_(0.5)
                norm.bias.add_(1.0)
    normalized.load_state_dict(plain.state_dict())
    inputs = step_inputs(plain)
    keys = ("pixel_values", "input_ids", "attention_mask")
    views = normalized.encode_views(**{k: inputs[k] for k in keys}, generator=torch.Generator().manual_seed(0))
    predicted = normalized.mim_predictor(views.fused_patch_states())
    target = torch.nn.functional.layer_norm(
        mamo_gather_patches(views.teacher.image_states[:, 1:], views.masked_patches), (predicted.shape[-1],)
    )
    expected = (predicted - target).abs().mean()
    torch.testing.assert_close(normalized.mim_loss(views).loss, expected)
    # MRM's target is normalized too: the loss regresses the layer-normalized teacher fusion states.
    teacher = views.teacher
    width = (normalized.config.fusion_encoder_config.hidden_size,)
    patch_target = torch.nn.functional.layer_norm(teacher.fusion_patch_layers[-1], width)
    token_target = torch.nn.functional.layer_norm(teacher.fusion_token_layers[-1], width)
    expected_mrm = torch.nn.functional.mse_loss(
        normalized.mrm_predictor(views.fused_patch_states()), patch_target
    ) + torch.nn.functional.mse_loss(normalized.mrm_predictor(views.fused_token_states()), token_target)
    torch.testing.assert_close(normalized.mrm_loss(views).loss, expected_mrm)
    plain_views = plain.encode_views(**{k: inputs[k] for k in keys}, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(plain.mim_loss(plain_views).loss, normalized.mim_loss(views).loss)
    assert not torch.allclose(plain.mrm_loss(plain_views).loss, normalized.mrm_loss(views).loss)


def test_masked_modeling_weights_ramp_up_over_the_warmup_and_the_counter_is_saved(tmp_path):
    model = build(masked_modeling_warmup_steps=4).train()
    for updates, expected_ramp in ((0, 0.0), (2, 0.5), (4, 1.0), (6, 1.0)):
        while int(model.teacher_updates) < updates:
            model.update_teacher()
        outputs = model(**step_inputs(model))
        rest = outputs.loss_itc + outputs.loss_itm + outputs.loss_mlm
        torch.testing.assert_close(outputs.loss, rest + expected_ramp * (outputs.loss_mim + outputs.loss_mrm))
    model.save_pretrained(tmp_path)
    assert int(MamoForPreTraining.from_pretrained(tmp_path).teacher_updates) == 6
    assert "teacher_updates" not in build().state_dict()  # no counter without a warm-up


@pytest.mark.parametrize("overrides", [{}, {"mrm_target_layers": 2, "queue_size": 8}])
def test_the_last_fusion_layer_at_read_positions_only_gives_the_same_losses_and_gradients(monkeypatch, overrides):
    """The fusion encoder's last layer runs only where a loss reads (ITM views at [CLS], masked views at their
    masked positions, the teacher at MRM's targets): every loss and gradient equals the full last layer's."""
    from functools import partial

    from mamo_hf import modeling_mamo

    results = {}
    for read_positions_only in (True, False):
        fusion_batch = partial(modeling_mamo.FusionBatch, read_positions_only=read_positions_only)
        monkeypatch.setattr(modeling_mamo, "FusionBatch", fusion_batch)
        model = build(**overrides).train()
        outputs = model(**step_inputs(model, batch_size=6))
        outputs.loss.backward()
        losses = {name: getattr(outputs, f"loss_{name}") for name in OBJECTIVES}
        gradients = {
            name: parameter.grad for name, parameter in model.named_parameters() if parameter.grad is not None
        }
        results[read_positions_only] = losses, gradients
    (losses, gradients), (reference_losses, reference_gradients) = results[True], results[False]
    torch.testing.assert_close(losses, reference_losses, atol=1e-6, rtol=1e-5)
    assert gradients.keys() == reference_gradients.keys()
    torch.testing.assert_close(gradients, reference_gradients, atol=1e-6, rtol=1e-4)


def test_each_view_is_fused_and_read_where_its_loss_reads():
    """The states the losses get are the full fusion outputs of each view at its masked patches, masked tokens or
    [CLS], recomputed here from scratch (the teacher, still equal to the student, gives MRM's targets)."""
    from mamo_hf.losses_mamo import image_mask_to_indices

    model = build()
    assert teacher_matches_student(model)
    inputs = random_pairs(model.config, batch_size=4)
    views = model.encode_views(**inputs, generator=torch.Generator().manual_seed(0))
    mamo, pixels, mask = model.mamo, inputs["pixel_values"], inputs["attention_mask"]
    length = mask.shape[1]

    def at_masked_patches(fused):
        return mamo_gather_patches(fused[:, length + 1 :], views.masked_patches)

    visible, _ = image_mask_to_indices(views.image_mask)
    masked_image = mamo.get_image_features(pixels, visible_patch_indices=visible).last_hidden_state
    restored = mamo.restore_masked_patches(masked_image, visible, pixels.shape[-2:])
    fused = mamo.fuse(views.text.last_hidden_state, mask, restored).last_hidden_state
    torch.testing.assert_close(views.fused_patch_states(), at_masked_patches(fused))

    masked_ids = inputs["input_ids"].masked_fill(views.text_mask, model.config.text_config.mask_token_id)
    masked_text = mamo.get_text_features(masked_ids, attention_mask=mask).last_hidden_state
    fused = mamo.fuse(masked_text, mask, views.image.last_hidden_state).last_hidden_state
    torch.testing.assert_close(views.fused_token_states(), fused[:, :length][views.text_mask])

    clean = mamo.fuse(views.text.last_hidden_state, mask, views.image.last_hidden_state).last_hidden_state
    torch.testing.assert_close(views.fused["positive"], clean[:, 0])
    torch.testing.assert_close(views.teacher.fusion_token_layers[-1], clean[:, :length][views.text_mask])
    torch.testing.assert_close(views.teacher.fusion_patch_layers[-1], at_masked_patches(clean))


def test_a_staged_schedule_runs_no_teacher_and_no_masked_image_view_before_it_starts_then_the_five_objectives():
    model = build(masked_modeling_start_step=3, masked_modeling_warmup_steps=2).train()
    teacher_calls = []
    model.teacher.image_encoder.register_forward_hook(lambda *args: teacher_calls.append(1))
    for updates in range(6):
        teacher_calls.clear()
        inputs = step_inputs(model)
        outputs = model(**inputs)
        views = model.encode_views(**{name: inputs[name] for name in ("pixel_values", "input_ids", "attention_mask")})
        started = updates >= 3
        assert set(outputs.losses) == ({"itc", "itm", "mlm", "mim", "mrm"} if started else {"itc", "itm", "mlm"})
        assert ("masked_image" in views.fused) is started and (views.teacher is not None) is started
        assert bool(teacher_calls) is started
        if started:  # ramped up over 2 updates from the start: 0, 0.5, 1
            ramp = min(1.0, (updates - 3) / 2)
            rest = outputs.loss_itc + outputs.loss_itm + outputs.loss_mlm
            torch.testing.assert_close(outputs.loss, rest + ramp * (outputs.loss_mim + outputs.loss_mrm))
        model.update_teacher()  # the teacher follows the student from the first step on
    assert int(model.teacher_updates) == 6


# --------------------------------------------------------------------------------------------------------------------
# Caption negatives: one more ITM view per image, more negatives in ITC
# --------------------------------------------------------------------------------------------------------------------


def test_pretraining_with_caption_negatives_adds_one_itm_view_per_image_and_changes_itc():
    config, processor, collator = setup_with_negatives()
    dataset = DemoCaptionDataset(6, seed=1, image_size=32, max_objects=2, templates=("list", "relation"))
    batch = collator([dataset[index] for index in range(6)])
    torch.manual_seed(0)
    model = MamoForPreTraining(config).train()
    with_negatives = model(**batch, generator=torch.Generator().manual_seed(0))
    plain = {name: value for name, value in batch.items() if not name.startswith("negative")}
    without = model(**plain, generator=torch.Generator().manual_seed(0))
    assert with_negatives.itm_logits.shape == (24, 2) and without.itm_logits.shape == (18, 2)
    assert with_negatives.itm_labels[18:].tolist() == [0] * 6
    assert with_negatives.loss_itc > without.loss_itc  # more negatives in each image's softmax
    torch.testing.assert_close(with_negatives.loss_mlm, without.loss_mlm)  # masked modeling is untouched
    with_negatives.loss.backward()
    assert model.mamo.text_encoder.embeddings.word_embeddings.weight.grad is not None
    with pytest.raises(ValueError, match="together"):
        model(**plain, negative_input_ids=batch["negative_input_ids"])
