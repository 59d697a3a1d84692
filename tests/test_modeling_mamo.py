"""Equivalence and error tests of MamoModel and its encoders."""

import copy
import os

import pytest
import torch
from helpers import random_pairs, tiny_config, tiny_tokenizer
from transformers import AutoConfig, AutoModel, BertConfig, BertForMaskedLM, BertModel, ViTConfig, ViTModel

from mamo_hf import (
    MamoConfig,
    MamoForPreTraining,
    MamoFusionConfig,
    MamoModel,
    MamoTextConfig,
    MamoVisionConfig,
)
from mamo_hf.conversion_mamo import interpolate_position_embeddings

ATOL = 1e-5


@pytest.fixture
def model():
    torch.manual_seed(0)
    return MamoModel(tiny_config()).eval()


def real_positions(outputs, attention_mask):
    """Fusion states at non-padding positions (text tokens that are real, and every image token)."""
    text_length = attention_mask.shape[1]
    keep = torch.cat(
        [attention_mask.bool(), torch.ones(attention_mask.shape[0], outputs.shape[1] - text_length).bool()], 1
    )
    return [outputs[row][keep[row]] for row in range(outputs.shape[0])]


# ----------------------------------------------------------------------------------------------------------------
# Equivalences
# ----------------------------------------------------------------------------------------------------------------


def test_batched_equals_one_by_one_with_padded_texts(model):
    batch = random_pairs(model.config)
    with torch.no_grad():
        batched = model(**batch)
        for row in range(4):
            length = int(batch["attention_mask"][row].sum())
            single = model(
                input_ids=batch["input_ids"][row : row + 1, :length],
                attention_mask=batch["attention_mask"][row : row + 1, :length],
                pixel_values=batch["pixel_values"][row : row + 1],
            )
            batched_states = real_positions(batched.last_hidden_state, batch["attention_mask"])[row]
            torch.testing.assert_close(batched_states, single.last_hidden_state[0], atol=ATOL, rtol=ATOL)
            torch.testing.assert_close(batched.text_embeds[row], single.text_embeds[0], atol=ATOL, rtol=ATOL)
            torch.testing.assert_close(batched.image_embeds[row], single.image_embeds[0], atol=ATOL, rtol=ATOL)


def test_sdpa_equals_eager(model):
    batch = random_pairs(model.config)
    eager = MamoModel(copy.deepcopy(model.config)).eval()
    eager.load_state_dict(model.state_dict())
    eager.set_attn_implementation("eager")
    assert model.config._attn_implementation == "sdpa"
    assert eager.fusion_encoder.config._attn_implementation == "eager"
    with torch.no_grad():
        sdpa_outputs, eager_outputs = model(**batch), eager(**batch)
    for sdpa_row, eager_row in zip(
        real_positions(sdpa_outputs.last_hidden_state, batch["attention_mask"]),
        real_positions(eager_outputs.last_hidden_state, batch["attention_mask"]),
    ):
        torch.testing.assert_close(sdpa_row, eager_row, atol=ATOL, rtol=ATOL)
    torch.testing.assert_close(sdpa_outputs.logits_per_image, eager_outputs.logits_per_image, atol=ATOL, rtol=ATOL)


def _loss_and_gradients(model, batch):
    model.zero_grad()
    outputs = model(**batch)
    loss = outputs.last_hidden_state.pow(2).mean() + outputs.logits_per_image.logsumexp(-1).mean()
    loss.backward()
    grads = {
        name: parameter.grad.clone() for name, parameter in model.named_parameters() if parameter.grad is not None
    }
    return outputs, grads


def test_activation_checkpointing_matches_plain(model):
    batch = random_pairs(model.config)
    model.train()
    plain_outputs, plain_grads = _loss_and_gradients(model, batch)
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    layers = [*model.image_encoder.layers, *model.text_encoder.layers, *model.fusion_encoder.layers]
    assert all(layer.gradient_checkpointing for layer in layers)
    checkpointed_outputs, checkpointed_grads = _loss_and_gradients(model, batch)
    torch.testing.assert_close(checkpointed_outputs.last_hidden_state, plain_outputs.last_hidden_state)
    assert checkpointed_grads.keys() == plain_grads.keys() and len(plain_grads) > 100
    for name in plain_grads:
        torch.testing.assert_close(checkpointed_grads[name], plain_grads[name], atol=1e-6, rtol=1e-5, msg=name)


def test_save_load_round_trip_uses_safetensors(model, tmp_path):
    batch = random_pairs(model.config)
    model.save_pretrained(tmp_path)
    files = sorted(os.listdir(tmp_path))
    assert "model.safetensors" in files
    assert not any(name.endswith((".bin", ".pt", ".pth", ".pkl")) for name in files)
    reloaded = AutoModel.from_pretrained(tmp_path)
    assert type(reloaded) is MamoModel
    with torch.no_grad():
        before, after = model(**batch), reloaded(**batch)
    torch.testing.assert_close(after.last_hidden_state, before.last_hidden_state, atol=0, rtol=0)
    torch.testing.assert_close(after.logits_per_image, before.logits_per_image, atol=0, rtol=0)
    assert reloaded.itc_temperature.item() == pytest.approx(model.config.temperature)


def test_keeping_every_patch_through_the_drop_path_equals_plain(model):
    batch = random_pairs(model.config)
    num_patches = model.config.vision_config.num_patches
    every_patch = torch.arange(num_patches).expand(4, -1)
    with torch.no_grad():
        plain = model(**batch)
        dropped = model(**batch, visible_patch_indices=every_patch)
    torch.testing.assert_close(dropped.last_hidden_state, plain.last_hidden_state, atol=0, rtol=0)
    torch.testing.assert_close(dropped.image_embeds, plain.image_embeds, atol=0, rtol=0)


def test_dropped_patches_reach_fusion_as_mask_embedding_plus_position(model):
    batch = random_pairs(model.config)
    visible = torch.tensor([[0, 5, 9, 15]] * 4)
    with torch.no_grad():
        image = model.image_encoder(batch["pixel_values"], visible_patch_indices=visible).last_hidden_state
        restored = model.restore_masked_patches(image, visible, (32, 32))
    assert image.shape == (4, 5, 64) and restored.shape == (4, 17, 64)
    positions = model.image_encoder.embeddings.position_embeddings[0, 1:]
    torch.testing.assert_close(restored[:, 0], image[:, 0])
    torch.testing.assert_close(restored[:, 1 + visible[0]], image[:, 1:])
    masked = [patch for patch in range(16) if patch not in visible[0].tolist()]
    expected = (model.image_mask_embedding[0, 0] + positions[masked]).expand(4, -1, -1)
    torch.testing.assert_close(restored[:, [1 + patch for patch in masked]], expected)


def test_masked_image_only_pays_for_visible_patches(model):
    batch = random_pairs(model.config)
    visible = torch.stack([torch.randperm(16, generator=torch.Generator().manual_seed(i))[:4] for i in range(4)])
    outputs = model(**batch, visible_patch_indices=visible.sort(-1).values)
    assert outputs.image_model_output.last_hidden_state.shape[1] == 1 + 4
    assert outputs.last_hidden_state.shape[1] == batch["input_ids"].shape[1] + 1 + 16


def test_interpolated_position_embeddings_at_native_size_equal_originals():
    torch.manual_seed(0)
    position_embeddings = torch.randn(1, 1 + 16 * 16, 24)
    resized = interpolate_position_embeddings(position_embeddings, 16, 16)
    torch.testing.assert_close(resized, position_embeddings, atol=1e-6, rtol=1e-6)
    assert interpolate_position_embeddings(position_embeddings, 24, 20).shape == (1, 1 + 24 * 20, 24)


def test_other_resolution_uses_interpolated_positions(model):
    batch = random_pairs(model.config)
    pixel_values = torch.nn.functional.interpolate(batch["pixel_values"], size=(48, 48))
    outputs = model(**{**batch, "pixel_values": pixel_values})
    assert outputs.last_hidden_state.shape[1] == batch["input_ids"].shape[1] + 1 + 36


def test_features_are_normalised_projections(model):
    batch = random_pairs(model.config)
    image = model.get_image_features(batch["pixel_values"])
    text = model.get_text_features(batch["input_ids"], attention_mask=batch["attention_mask"])
    assert image.pooler_output.shape == text.pooler_output.shape == (4, model.config.projection_dim)
    torch.testing.assert_close(image.pooler_output.norm(dim=-1), torch.ones(4))
    torch.testing.assert_close(text.pooler_output.norm(dim=-1), torch.ones(4))
    outputs = model(**batch)
    torch.testing.assert_close(outputs.logits_per_image, image.pooler_output @ text.pooler_output.t() / 0.07)


def test_fusion_attention_maps_with_eager(model):
    model.set_attn_implementation("eager")
    batch = random_pairs(model.config)
    outputs = model(**batch, output_attentions=True, output_hidden_states=True)
    fusion = outputs.fusion_model_output
    length = batch["input_ids"].shape[1] + 17
    assert len(fusion.attentions) == 2 and fusion.attentions[0].shape == (4, 4, length, length)
    assert len(fusion.hidden_states) == 3
    torch.testing.assert_close(fusion.attentions[1].sum(-1), torch.ones(4, 4, length))
    padded = ~batch["attention_mask"].bool()
    assert padded.any()
    for row in range(4):  # no probability mass on padding keys
        keys = padded[row].nonzero().flatten()
        assert fusion.attentions[1][row][..., keys].abs().sum() == 0
    attention = fusion.attentions[1]
    attention.retain_grad()
    outputs.pooler_output.sum().backward()
    assert attention.grad is not None and attention.grad.abs().sum() > 0


def test_auto_classes_resolve_mamo(model, tmp_path):
    assert type(AutoConfig.for_model("mamo")) is MamoConfig
    assert type(AutoModel.from_config(model.config)) is MamoModel
    model.save_pretrained(tmp_path)
    saved = AutoConfig.from_pretrained(tmp_path)
    assert saved.auto_map["AutoModel"] == "modeling_mamo.MamoModel"
    assert saved.auto_map["AutoConfig"] == "configuration_mamo.MamoConfig"
    assert {"modeling_mamo.py", "configuration_mamo.py"} <= set(os.listdir(tmp_path))


# ----------------------------------------------------------------------------------------------------------------
# Initialisation from public checkpoints (tiny ones, saved locally)
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vit_and_bert(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    torch.manual_seed(0)
    vit = ViTModel(
        ViTConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=37,
            image_size=32,
            patch_size=8,
        )
    ).eval()
    vit.save_pretrained(root / "vit")
    tokenizer = tiny_tokenizer()
    bert = BertForMaskedLM(
        BertConfig(
            vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=37
        )
    ).eval()
    bert.save_pretrained(root / "bert")
    tokenizer.save_pretrained(root / "bert")
    return root / "vit", root / "bert"


def test_image_encoder_reproduces_vit(vit_and_bert):
    vit_path, bert_path = vit_and_bert
    model = MamoModel.from_vision_text_pretrained(vit_path, bert_path)
    vit = ViTModel.from_pretrained(vit_path).eval()
    pixel_values = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            model.image_encoder(pixel_values).last_hidden_state,
            vit(pixel_values).last_hidden_state,
            atol=ATOL,
            rtol=ATOL,
        )
        larger = torch.randn(2, 3, 48, 48)
        torch.testing.assert_close(
            model.image_encoder(larger).last_hidden_state,
            vit(larger, interpolate_pos_encoding=True).last_hidden_state,
            atol=ATOL,
            rtol=ATOL,
        )


def test_text_encoder_reproduces_first_bert_layers(vit_and_bert):
    vit_path, bert_path = vit_and_bert
    model, info = MamoModel.from_vision_text_pretrained(vit_path, bert_path, output_loading_info=True)
    bert = BertModel.from_pretrained(bert_path).eval()
    batch = random_pairs(model.config)
    with torch.no_grad():
        reference = bert(batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
        ours = model.text_encoder(batch["input_ids"], attention_mask=batch["attention_mask"])
    assert model.config.text_config.num_hidden_layers == 2
    assert model.config.fusion_encoder_config.num_hidden_layers == 2
    torch.testing.assert_close(ours.last_hidden_state, reference.hidden_states[2], atol=ATOL, rtol=ATOL)
    # The fusion layers are BERT layers 3 and 4: on text alone they continue BERT exactly.
    fusion_layer = model.fusion_encoder.layers[0]
    bert_layer = bert.encoder.layer[2]
    states = reference.hidden_states[2]
    with torch.no_grad():
        mask = (1.0 - batch["attention_mask"][:, None, None, :].float()) * torch.finfo(torch.float32).min
        torch.testing.assert_close(fusion_layer(states, mask), bert_layer(states, mask), atol=ATOL, rtol=ATOL)
    assert model.config.text_config.mask_token_id == 4 and model.config.text_config.cls_token_id == 2
    expected_new = {
        "image_mask_embedding",
        "log_temperature",
        "fusion_encoder.modality_type_embeddings.weight",
        "image_to_fusion.weight",
        "image_to_fusion.bias",
        "image_projection.weight",
        "image_projection.bias",
        "text_projection.weight",
        "text_projection.bias",
    }
    assert set(info["new_keys"]) == expected_new
    # MamoModel has no MLM head: BERT's (renamed) is reported as unused.
    assert info["unused_keys"] and all(key.startswith("mlm_head.") for key in info["unused_keys"])


def test_pretraining_model_takes_bert_mlm_head_and_a_teacher_copy(vit_and_bert):
    vit_path, bert_path = vit_and_bert
    model, info = MamoForPreTraining.from_vision_text_pretrained(vit_path, bert_path, output_loading_info=True)
    bert = BertForMaskedLM.from_pretrained(bert_path)
    head = bert.cls.predictions
    torch.testing.assert_close(model.mlm_head.dense.weight, head.transform.dense.weight)
    torch.testing.assert_close(model.mlm_head.layernorm.weight, head.transform.LayerNorm.weight)
    torch.testing.assert_close(model.mlm_head.decoder.bias, head.bias)
    assert model.mlm_head.decoder.weight is model.mamo.text_encoder.embeddings.word_embeddings.weight
    torch.testing.assert_close(
        model.mamo.text_encoder.embeddings.word_embeddings.weight, bert.bert.embeddings.word_embeddings.weight
    )
    assert all(torch.equal(t, s) for t, s in zip(model.teacher.parameters(), model.mamo.parameters()))
    assert not any(parameter.requires_grad for parameter in model.teacher.parameters())
    assert not any(key.startswith(("mlm_head.", "teacher.")) for key in info["new_keys"])
    assert {"itm_head.weight", "mim_predictor.fc1.weight", "mrm_predictor.fc2.bias"} <= set(info["new_keys"])


def test_initialisation_at_a_new_resolution_interpolates_positions(vit_and_bert):
    vit_path, bert_path = vit_and_bert
    model = MamoModel.from_vision_text_pretrained(vit_path, bert_path, image_size=48, projection_dim=8)
    assert model.config.vision_config.image_size == 48 and model.config.projection_dim == 8
    assert model.image_encoder.embeddings.position_embeddings.shape == (1, 1 + 36, 32)
    with pytest.raises(ValueError, match="num_text_layers"):
        MamoModel.from_vision_text_pretrained(vit_path, bert_path, num_text_layers=4)


# ----------------------------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: MamoVisionConfig(hidden_size=30, num_attention_heads=4), "hidden_size"),
        (lambda: MamoTextConfig(hidden_size=30, num_attention_heads=4), "hidden_size"),
        (lambda: MamoFusionConfig(hidden_size=30, num_attention_heads=4), "hidden_size"),
        (lambda: MamoVisionConfig(image_size=250, patch_size=16), "image_size"),
        (
            lambda: MamoConfig(text_config={"hidden_size": 64, "num_attention_heads": 4}),
            "fusion_encoder_config.hidden_size",
        ),
        (lambda: MamoConfig(image_mask_ratio=1.0), "image_mask_ratio"),
        (lambda: MamoConfig(image_mask_ratio=-0.1), "image_mask_ratio"),
        (lambda: MamoConfig(text_mask_ratio=1.5), "text_mask_ratio"),
        (lambda: MamoConfig(itc_weight=-1.0), "itc_weight"),
        (lambda: MamoConfig(itm_weight=-1.0), "itm_weight"),
        (lambda: MamoConfig(mlm_weight=-1.0), "mlm_weight"),
        (lambda: MamoConfig(mim_weight=-1.0), "mim_weight"),
        (lambda: MamoConfig(mrm_weight=-1.0), "mrm_weight"),
        (lambda: MamoConfig(temperature=0.9), "temperature"),
        (lambda: MamoConfig(momentum=1.5), "momentum"),
        (lambda: MamoConfig(queue_size=-1), "queue_size"),
        (lambda: MamoConfig(distill_alpha=2.0), "distill_alpha"),
        (lambda: MamoConfig(mrm_target_layers=7), "mrm_target_layers"),
        (lambda: MamoConfig(text_mask_random_ratio=0.6, text_mask_keep_ratio=0.6), "text_mask_random_ratio"),
        (lambda: MamoConfig(projection_dim=0), "projection_dim"),
    ],
)
def test_invalid_config_values_name_the_field(build, field):
    with pytest.raises(ValueError, match=f"`{field}`"):
        build()


def test_base_preset_matches_spec():
    config = MamoConfig.mamo_base()
    vision, text, fusion = config.vision_config, config.text_config, config.fusion_encoder_config
    assert (vision.num_hidden_layers, vision.hidden_size, vision.num_attention_heads) == (12, 768, 12)
    assert (vision.intermediate_size, vision.patch_size, vision.image_size) == (3072, 16, 256)
    assert (text.num_hidden_layers, text.hidden_size, text.vocab_size) == (6, 768, 30522)
    assert (fusion.num_hidden_layers, fusion.hidden_size) == (6, 768)
    assert (config.projection_dim, config.temperature, config.temperature_min, config.temperature_max) == (
        256,
        0.07,
        0.001,
        0.5,
    )
    assert (config.momentum, config.image_mask_ratio, config.text_mask_ratio) == (0.995, 0.75, 0.25)
    assert (config.queue_size, config.distill_alpha) == (0, 0.0)
    assert [config.itc_weight, config.itm_weight, config.mlm_weight, config.mim_weight, config.mrm_weight] == [1.0] * 5


@pytest.mark.parametrize(
    ("pixel_values", "message"),
    [
        (torch.randn(2, 32, 32), "must have shape"),
        (torch.randn(2, 1, 3, 32, 32), "must have shape"),
        (torch.randn(2, 4, 32, 32), "4 channels"),
    ],
)
def test_bad_pixel_values_raise(model, pixel_values, message):
    batch = random_pairs(model.config, batch_size=2)
    with pytest.raises(ValueError, match=message):
        model(**{**batch, "pixel_values": pixel_values})
    with pytest.raises(ValueError, match=message):
        model.image_encoder(pixel_values)


def test_mismatched_batch_sizes_raise(model):
    batch = random_pairs(model.config)
    with pytest.raises(ValueError, match="same batch size"):
        model(**{**batch, "attention_mask": batch["attention_mask"][:3]})
    with pytest.raises(ValueError, match="`fuse_pairs=True` needs images and texts in pairs, got 3 images and 4"):
        model(**{**batch, "pixel_values": batch["pixel_values"][:3]}, fuse_pairs=True)
    pretraining = MamoForPreTraining(model.config)  # the heads that fuse pairs still need them
    with pytest.raises(ValueError, match="same batch size"):
        pretraining(**{**batch, "pixel_values": batch["pixel_values"][:3]})


def test_text_longer_than_positions_raises(model):
    too_long = torch.full((1, 65), 7)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model.text_encoder(too_long)


def test_image_not_divisible_by_patch_raises(model):
    batch = random_pairs(model.config, batch_size=1)
    with pytest.raises(ValueError, match="not divisible by the patch size"):
        model(**{**batch, "pixel_values": torch.randn(1, 3, 30, 30)})


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_fusion_at_output_positions_equals_the_full_output_there_with_the_same_gradients(model, attention):
    model.set_attn_implementation(attention)
    batch = random_pairs(model.config)
    text = model.get_text_features(batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    image = model.get_image_features(batch["pixel_values"]).last_hidden_state
    positions = torch.zeros(4, text.shape[1] + image.shape[1], dtype=torch.bool)
    positions[0, 0] = True  # a [CLS] only
    positions[1, [2, 5, text.shape[1] + 3]] = True  # tokens and a patch
    positions[2] = True  # every position, padding included; row 3 reads nothing
    assert batch["attention_mask"][2].eq(0).any()

    def fused(output_positions):
        text_states, image_states = text.detach().requires_grad_(), image.detach().requires_grad_()
        states = model.fuse(text_states, batch["attention_mask"], image_states, output_positions=output_positions)
        return states.last_hidden_state, text_states, image_states

    full, full_text, full_image = fused(None)
    selected, text_states, image_states = fused(positions)
    assert selected.shape == (1 + 3 + positions.shape[1], model.config.fusion_encoder_config.hidden_size)
    torch.testing.assert_close(selected, full[positions], atol=ATOL, rtol=0)
    weights = torch.randn(selected.shape, generator=torch.Generator().manual_seed(0))
    (full[positions] * weights).sum().backward()
    (selected * weights).sum().backward()
    torch.testing.assert_close(text_states.grad, full_text.grad, atol=ATOL, rtol=0)
    torch.testing.assert_close(image_states.grad, full_image.grad, atol=ATOL, rtol=0)


@pytest.mark.parametrize("model_class", [MamoModel, MamoForPreTraining])
def test_a_checkpoint_with_the_older_scalar_temperature_loads_and_saves_the_new_shape(tmp_path, model_class):
    """`log_temperature` has shape [1] (FSDP2 cannot shard a scalar); checkpoints that hold it as a scalar still
    load, with their value, and are saved back with the new shape."""
    from safetensors.torch import load_file, save_file

    MamoForPreTraining(tiny_config()).save_pretrained(tmp_path / "old")
    state = load_file(tmp_path / "old" / "model.safetensors")
    for name in ("mamo.log_temperature", "teacher.log_temperature"):
        assert state[name].shape == (1,)
        state[name] = torch.tensor(-2.5)  # as written before the change
    save_file(state, tmp_path / "old" / "model.safetensors", metadata={"format": "pt"})
    model = model_class.from_pretrained(tmp_path / "old")
    base = getattr(model, "mamo", model)
    assert base.log_temperature.shape == (1,) and base.log_temperature.item() == -2.5
    assert base.itc_temperature.shape == ()
    model.save_pretrained(tmp_path / "new")
    saved = load_file(tmp_path / "new" / "model.safetensors")
    assert {value.shape for name, value in saved.items() if name.endswith("log_temperature")} == {(1,)}
