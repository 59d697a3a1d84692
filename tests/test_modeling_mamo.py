"""Equivalence and error tests of MamoModel and its encoders; N images against M texts, the features API and the
pipelines; the task heads (retrieval, VQA, NLVR2). `MamoForPreTraining` has its own file, test_pretraining.py."""

import copy
import os

import pytest
import torch
from helpers import (
    LABELS,
    easy_vqa_parts,
    images,
    random_pairs,
    save_checkpoint_and_images,
    tiny_config,
    tiny_processor,
    tiny_tokenizer,
)
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForVisualQuestionAnswering,
    AutoModelForZeroShotImageClassification,
    BertConfig,
    BertForMaskedLM,
    BertModel,
    Trainer,
    TrainingArguments,
    ViTConfig,
    ViTModel,
    pipeline,
)

from mamo_hf import (
    MamoConfig,
    MamoForImageTextRetrieval,
    MamoForPreTraining,
    MamoForQuestionAnswering,
    MamoForVisualReasoning,
    MamoFusionConfig,
    MamoModel,
    MamoProcessor,
    MamoTextConfig,
    MamoVisionConfig,
)
from mamo_hf.conversion_mamo import interpolate_position_embeddings
from mamo_hf.data import tiny_config_and_processor
from mamo_hf.data.nlvr2 import CountComparisonDataset, NLVR2Collator
from mamo_hf.data.vqa import VQACollator

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


@pytest.mark.parametrize("model_class", [MamoModel, MamoForPreTraining])
def test_from_pretrained_of_a_file_or_a_folder_without_config_is_an_os_error_naming_it(model, tmp_path, model_class):
    """Issue 29 (battery): the path of a file (`model/config.json`) was unpickled as weights after 30 s of Hub
    retries, and a training `checkpoint-N` folder (weights without config.json) loaded a default MAMO-base config
    and failed on every size; both are now one `OSError` naming the path, at once."""
    model.save_pretrained(tmp_path / "model")
    with pytest.raises(OSError, match=f"{tmp_path / 'model' / 'config.json'} is a file: give the folder"):
        model_class.from_pretrained(tmp_path / "model" / "config.json")
    (tmp_path / "model" / "config.json").rename(tmp_path / "config.json")
    with pytest.raises(OSError, match=f"{tmp_path / 'model'} has no config.json: not a folder written by save_pretr"):
        model_class.from_pretrained(str(tmp_path / "model"))
    config = MamoConfig.from_pretrained(tmp_path)  # a config given: the folder's weights load with it
    assert type(model_class.from_pretrained(tmp_path / "model", config=config)) is model_class


@pytest.mark.parametrize("bad_id", [10**6, -1])
def test_input_ids_outside_the_vocabulary_are_a_value_error_naming_the_vocabulary(model, bad_id):
    """Issue 29 (battery): an id beyond the vocabulary (another model's tokenizer) was torch's IndexError "index out
    of range in self"."""
    input_ids = torch.tensor([[2, bad_id, 3]])
    vocabulary = f"outside the vocabulary of {model.config.text_config.vocab_size} tokens"
    with pytest.raises(ValueError, match=f"{vocabulary} \\(from {min(bad_id, 2)} to {max(bad_id, 3)}\\)"):
        model.get_text_features(input_ids=input_ids)


def test_input_ids_of_length_zero_are_a_value_error(model):
    """Issue 29 (battery): a text of no tokens was a RuntimeError from a reshape inside attention."""
    with pytest.raises(ValueError, match="The text has no tokens"):
        model.get_text_features(input_ids=torch.zeros(1, 0, dtype=torch.long))


def test_save_pretrained_into_a_file_is_an_os_error_and_leaves_the_file(model, tmp_path):
    """Issue 29 (battery): transformers logged "should be a directory, not a file", saved nothing and returned as
    if it had saved."""
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(OSError, match="notes.txt is a file: save_pretrained writes a folder"):
        model.save_pretrained(tmp_path / "notes.txt")
    assert (tmp_path / "notes.txt").read_text() == "keep me"


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


def test_texts_without_tokens_raise_naming_the_shape(model):
    """Issue 29: `input_ids` of shape `[3, 0]` ended in "cannot reshape tensor of 0 elements"."""
    batch = random_pairs(model.config, batch_size=3)
    empty = {"input_ids": torch.zeros(3, 0, dtype=torch.long), "attention_mask": torch.zeros(3, 0, dtype=torch.long)}
    for call in (
        lambda: model(**{**batch, **empty}),
        lambda: model(**empty),
        lambda: MamoForPreTraining(model.config)(**{**batch, **empty}),
    ):
        with pytest.raises(ValueError, match="at least one token per text, got shape \\(3, 0\\)"):
            call()


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


# --------------------------------------------------------------------------------------------------------------------
# N images against M texts, the features API and the pipelines, as CLIP users expect
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_class", [MamoModel, MamoForImageTextRetrieval])
def test_n_images_against_m_texts_give_the_itc_scores_of_every_pair(model_class):
    torch.manual_seed(0)
    model = model_class(tiny_config()).eval()
    pairs = random_pairs(model.config, batch_size=4)
    with torch.no_grad():
        paired = model(**pairs)
        three_texts = model(
            pixel_values=pairs["pixel_values"][:2],
            input_ids=pairs["input_ids"][:3],
            attention_mask=pairs["attention_mask"][:3],
        )
    assert three_texts.logits_per_image.shape == (2, 3) and three_texts.logits_per_text.shape == (3, 2)
    torch.testing.assert_close(three_texts.logits_per_image, paired.logits_per_image[:2, :3])
    assert three_texts.last_hidden_state is None  # nothing to fuse without pairs
    with pytest.raises(ValueError, match="2 images and 4 texts"):
        model(**{**pairs, "pixel_values": pairs["pixel_values"][:2]}, return_loss=True)


def test_mamo_model_returns_clips_symmetric_itc_loss():
    torch.manual_seed(0)
    model = MamoModel(tiny_config())
    pairs = random_pairs(model.config, batch_size=4)
    outputs = model(**pairs, return_loss=True)
    targets = torch.arange(4)
    expected = (
        torch.nn.functional.cross_entropy(outputs.logits_per_image, targets)
        + torch.nn.functional.cross_entropy(outputs.logits_per_text, targets)
    ) / 2
    torch.testing.assert_close(outputs.loss, expected)
    outputs.loss.backward()
    assert model.log_temperature.grad is not None
    assert model(**pairs).loss is None
    assert model(**pairs, fuse_pairs=False).pooler_output is None


@pytest.fixture
def saved(tmp_path):
    return save_checkpoint_and_images(tmp_path)


def test_pipeline_by_path_and_by_object_agree_with_the_model(saved):
    by_path = pipeline("zero-shot-image-classification", model=str(saved))
    assert type(by_path.model) is MamoForImageTextRetrieval
    assert type(AutoModelForZeroShotImageClassification.from_pretrained(saved)) is MamoForImageTextRetrieval
    processor = tiny_processor()
    model = MamoModel.from_pretrained(saved).eval()
    by_object = pipeline(
        "zero-shot-image-classification",
        model=model,
        tokenizer=processor.tokenizer,
        image_processor=processor.image_processor,
    )
    image = images(saved)[0]
    results = by_path(image, candidate_labels=LABELS, hypothesis_template="a {}")
    assert sorted(result["label"] for result in results) == sorted(LABELS)
    assert sum(result["score"] for result in results) == pytest.approx(1.0)
    inputs = processor(images=[image], text=[f"a {label}" for label in LABELS], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = model(**inputs).logits_per_image[0].softmax(-1)
    scores = {result["label"]: result["score"] for result in results}
    assert [scores[label] for label in LABELS] == pytest.approx(expected.tolist(), abs=1e-5)
    same = by_object(image, candidate_labels=LABELS, hypothesis_template="a {}")
    assert [result["label"] for result in same] == [result["label"] for result in results]
    assert [result["score"] for result in same] == pytest.approx([result["score"] for result in results], abs=1e-5)


@pytest.mark.parametrize(
    "head", ["MamoForImageTextRetrieval", "MamoForPreTraining", "MamoForQuestionAnswering", "MamoForVisualReasoning"]
)
def test_every_head_offers_the_features_api_of_its_encoders(head):
    import mamo_hf
    from mamo_hf import MamoModel

    config = tiny_config()
    torch.manual_seed(0)
    model = getattr(mamo_hf, head)(config).eval()
    base = MamoModel(config).eval()
    base.load_state_dict(model.mamo.state_dict())
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    ids = torch.tensor([[2, 10, 11, 3], [2, 12, 3, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        image, text = model.get_image_features(pixels), model.get_text_features(ids, attention_mask=mask)
        torch.testing.assert_close(image.pooler_output, base.get_image_features(pixels).pooler_output)
        torch.testing.assert_close(text.pooler_output, base.get_text_features(ids, attention_mask=mask).pooler_output)
    torch.testing.assert_close(image.pooler_output.norm(dim=-1), torch.ones(2))


def test_the_feature_extraction_pipelines_give_the_features_api_of_a_saved_checkpoint(saved):
    """`pipeline("image-feature-extraction")` (images alone) and `pipeline("feature-extraction")` (texts alone) load
    the `MamoModel` of a pre-training checkpoint and return what `get_image_features` / `get_text_features` do."""
    model, processor = MamoModel.from_pretrained(saved).eval(), MamoProcessor.from_pretrained(saved)
    image = images(saved)[0]
    pixels = processor(images=[image], return_tensors="pt")["pixel_values"]
    ids = processor(text=["red circle"], return_tensors="pt")
    with torch.no_grad():
        image_features = model.get_image_features(pixels)
        text_features = model.get_text_features(ids["input_ids"], attention_mask=ids["attention_mask"])
    pooled = pipeline("image-feature-extraction", model=str(saved))(image, pool=True)
    torch.testing.assert_close(torch.tensor(pooled), image_features.pooler_output, atol=1e-5, rtol=1e-5)
    states = pipeline("image-feature-extraction", model=str(saved))(image)
    torch.testing.assert_close(torch.tensor(states), image_features.last_hidden_state, atol=1e-5, rtol=1e-5)
    text_states = pipeline("feature-extraction", model=str(saved))("red circle")
    torch.testing.assert_close(torch.tensor(text_states), text_features.last_hidden_state, atol=1e-5, rtol=1e-5)


def test_one_modality_alone_is_checked_like_a_pair():
    model = MamoModel(tiny_config()).eval()
    with pytest.raises(ValueError, match="pixel_values"):
        model(pixel_values=torch.zeros(1, 3, 32, 32, dtype=torch.long))
    with pytest.raises(ValueError, match="vocabulary|vocab"):
        model(input_ids=torch.tensor([[2, 10**6, 3]]))


# --------------------------------------------------------------------------------------------------------------------
# MamoForImageTextRetrieval: the fine-tuning loss
# --------------------------------------------------------------------------------------------------------------------


def test_retrieval_head_loss_with_and_without_labels_and_backward():
    torch.manual_seed(0)
    model = MamoForImageTextRetrieval(tiny_config()).train()
    batch = random_pairs(model.config)
    assert model(**batch, return_loss=False).loss is None
    assert model.eval()(**batch).loss is None  # by default the loss is computed in training mode only
    assert model.train()(**batch, generator=torch.Generator().manual_seed(0)).loss > 0
    outputs = model(
        **batch, return_loss=True, image_ids=torch.tensor([0, 0, 1, 2]), generator=torch.Generator().manual_seed(0)
    )
    assert outputs.loss > 0 and outputs.itm_logits.shape == (4, 2) and outputs.logits_per_image.shape == (4, 4)
    outputs.loss.backward()
    assert model.itm_head.weight.grad is not None and model.mamo.log_temperature.grad is not None


class PairDataset(torch.utils.data.Dataset):
    def __init__(self, config):
        self.batch = random_pairs(config, batch_size=12, seed=4)

    def __len__(self):
        return 12

    def __getitem__(self, index):
        return {name: value[index] for name, value in self.batch.items()}


def test_retrieval_finetunes_with_trainer_from_a_pretraining_checkpoint(tmp_path):
    torch.manual_seed(0)
    pretrained = MamoForPreTraining(tiny_config())
    pretrained.save_pretrained(tmp_path / "pretrained")
    model = MamoForImageTextRetrieval.from_pretrained(tmp_path / "pretrained")
    torch.testing.assert_close(model.itm_head.weight, pretrained.itm_head.weight)  # the ITM head carries over
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=4,
        max_steps=3,
        learning_rate=1e-3,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        remove_unused_columns=False,
    )
    before = model.itm_head.weight.clone()
    Trainer(model=model, args=args, train_dataset=PairDataset(model.config)).train()  # no collator
    assert not torch.equal(before, model.itm_head.weight)
    model.save_pretrained(tmp_path / "finetuned")
    reloaded = MamoForImageTextRetrieval.from_pretrained(tmp_path / "finetuned").eval()
    batch = random_pairs(model.config)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).itm_logits, model.eval()(**batch).itm_logits)


# --------------------------------------------------------------------------------------------------------------------
# MamoForQuestionAnswering
# --------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def easy_vqa_setup():
    return easy_vqa_parts()


@pytest.fixture
def batch(easy_vqa_setup):
    train, processor, config = easy_vqa_setup
    return VQACollator(processor, config.label2id)([train[index] for index in range(6)])


def test_forward_backward(easy_vqa_setup, batch):
    torch.manual_seed(0)
    model = MamoForQuestionAnswering(easy_vqa_setup[2])
    outputs = model(**batch)
    assert outputs.logits.shape == (6, 13) and outputs.loss.ndim == 0 and torch.isfinite(outputs.loss)
    outputs.loss.backward()
    assert model.vqa_head.classifier.weight.grad.abs().sum() > 0
    assert model.mamo.image_encoder.embeddings.patch_embeddings.weight.grad.abs().sum() > 0
    without_labels = model(**{key: value for key, value in batch.items() if key != "labels"})
    assert without_labels.loss is None and torch.allclose(without_labels.logits, outputs.logits)
    with pytest.raises(ValueError, match="labels"):
        model(**{**batch, "labels": batch["labels"][:, :5]})


def test_top_answers(easy_vqa_setup, batch):
    model = MamoForQuestionAnswering(easy_vqa_setup[2]).eval()
    logits = model(**batch).logits
    top = model.top_answers(logits, k=3)
    assert len(top) == 6
    for row in top:
        probabilities = [probability for _, probability in row]
        assert len(row) == 3 and probabilities == sorted(probabilities, reverse=True)
        assert all(0.0 <= probability <= 1.0 for probability in probabilities)
        assert all(answer in model.config.label2id for answer, _ in row)
    assert len(model.top_answers(logits, k=100)[0]) == 13


def test_trainer_steps_and_auto_class_round_trip(easy_vqa_setup, tmp_path):
    train, processor, config = easy_vqa_setup
    torch.manual_seed(0)
    model = MamoForQuestionAnswering(config)
    before = model.vqa_head.classifier.weight.detach().clone()
    arguments = TrainingArguments(
        output_dir=str(tmp_path / "run"),
        per_device_train_batch_size=8,
        max_steps=3,
        learning_rate=1e-3,
        remove_unused_columns=False,
        report_to=[],
        save_strategy="no",
    )
    subset = torch.utils.data.Subset(train, range(24))
    trainer = Trainer(
        model=model, args=arguments, train_dataset=subset, data_collator=VQACollator(processor, config.label2id)
    )
    result = trainer.train()
    assert result.global_step == 3 and torch.isfinite(torch.tensor(result.training_loss))
    assert not torch.equal(before, model.vqa_head.classifier.weight)

    trainer.save_model(str(tmp_path / "model"))
    loaded = AutoModelForVisualQuestionAnswering.from_pretrained(tmp_path / "model")
    assert isinstance(loaded, MamoForQuestionAnswering) and loaded.config.id2label == config.id2label
    inputs = VQACollator(processor, config.label2id)([train[index] for index in range(4)])
    inputs.pop("labels")
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model(**inputs).logits, loaded(**inputs).logits, atol=1e-6)


# --------------------------------------------------------------------------------------------------------------------
# MamoForVisualReasoning
# --------------------------------------------------------------------------------------------------------------------


def pair_batch(config, batch_size=4):
    batch = random_pairs(config, batch_size=batch_size)
    generator = torch.Generator().manual_seed(7)
    batch["pixel_values"] = torch.randn(batch_size, 2, 3, 32, 32, generator=generator)
    return batch


def test_forward_backward_with_and_without_labels():
    torch.manual_seed(0)
    model = MamoForVisualReasoning(tiny_config())
    batch = pair_batch(model.config)
    outputs = model(**batch)
    assert outputs.loss is None and outputs.logits.shape == (4, 2)
    outputs = model(**batch, labels=torch.tensor([0, 1, 1, 0]))
    expected = torch.nn.functional.cross_entropy(outputs.logits, torch.tensor([0, 1, 1, 0]))
    torch.testing.assert_close(outputs.loss, expected)
    outputs.loss.backward()
    assert model.nlvr_head.classifier.weight.grad is not None
    assert model.mamo.image_encoder.embeddings.patch_embeddings.weight.grad is not None


def test_the_statement_is_encoded_once_and_each_image_fused_with_it():
    torch.manual_seed(0)
    model = MamoForVisualReasoning(tiny_config()).eval()
    batch = pair_batch(model.config, batch_size=3)
    shapes = {}

    def record(name):
        def hook(module, args, output):
            shapes[name] = output[0].shape

        return hook

    model.mamo.text_encoder.register_forward_hook(record("text"))
    model.mamo.fusion_encoder.register_forward_hook(record("fusion"))
    with torch.no_grad():
        logits = model(**batch).logits
    assert shapes["text"][0] == 3 and shapes["fusion"][0] == 6
    # Swapping the two images changes the answer's inputs: the classifier sees [left ; right], in order.
    swapped = {**batch, "pixel_values": batch["pixel_values"].flip(1)}
    with torch.no_grad():
        assert not torch.allclose(model(**swapped).logits, logits)


@pytest.mark.parametrize("shape", [(4, 3, 32, 32), (4, 3, 3, 32, 32), (4, 1, 3, 32, 32)])
def test_pixel_values_must_be_pairs(shape):
    model = MamoForVisualReasoning(tiny_config())
    batch = pair_batch(model.config)
    with pytest.raises(ValueError, match="pair of images"):
        model(**{**batch, "pixel_values": torch.randn(*shape)})


def test_trainer_steps_and_save_load(tmp_path):
    config, processor = tiny_config_and_processor()
    torch.manual_seed(0)
    model = MamoForVisualReasoning(config)
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        max_steps=3,
        learning_rate=1e-3,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        remove_unused_columns=False,
    )
    before = model.nlvr_head.classifier.weight.clone()
    Trainer(
        model=model,
        args=args,
        train_dataset=CountComparisonDataset(16, image_size=32),
        data_collator=NLVR2Collator(processor),
    ).train()
    assert not torch.equal(before, model.nlvr_head.classifier.weight)
    model.save_pretrained(tmp_path / "saved")
    reloaded = MamoForVisualReasoning.from_pretrained(tmp_path / "saved").eval()
    batch = NLVR2Collator(processor)([CountComparisonDataset(2, image_size=32)[i] for i in range(2)])
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, model.eval()(**batch).logits)
