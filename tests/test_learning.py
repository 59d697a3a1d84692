"""It learns: a tiny MAMO trained from scratch on generated shape scenes for a few hundred CPU steps.

Single-object scenes (colour, shape, size and position, 432 possible captions) from `mamo_hf.data.demo`; 2048
training pairs, 100 held-out pairs. Chance levels: ITC image→text R@1 1/100; a masked colour word 1/6 and a masked
shape word 1/4 even for a model that knows which kind of word is missing, and the text alone cannot tell which.
"""

import math
import random

import pytest
import torch

from mamo_hf import MamoConfig, MamoForPreTraining, MamoImageProcessorPil, MamoProcessor
from mamo_hf.configuration_mamo import special_token_ids
from mamo_hf.data.demo import COLOURS, SHAPES, demo_pairs, demo_tokenizer, draw_scene, random_scene
from mamo_hf.evaluation import zero_shot_classify

STEPS, BATCH_SIZE, LEARNING_RATE, WARMUP = 500, 32, 1e-3, 50
ITC_ONLY = {"itm_weight": 0.0, "mlm_weight": 0.0, "mim_weight": 0.0, "mrm_weight": 0.0}


@pytest.fixture(scope="module")
def data():
    tokenizer = demo_tokenizer()
    processor = MamoProcessor(
        image_processor=MamoImageProcessorPil(size={"height": 32, "width": 32}), tokenizer=tokenizer
    )

    def encode(pairs):
        return dict(
            processor(
                images=[pair[0] for pair in pairs], text=[pair[1] for pair in pairs], padding=True, return_tensors="pt"
            )
        )

    train = encode(demo_pairs(2048, seed=1, image_size=32, max_objects=1))
    held_out = encode(demo_pairs(100, seed=2, image_size=32, max_objects=1))
    word_ids = tokenizer.convert_tokens_to_ids(list(COLOURS) + list(SHAPES))
    held_out_words = torch.isin(held_out["input_ids"], torch.tensor(word_ids))
    return tokenizer, train, held_out, held_out_words


def build(tokenizer, **weights):
    torch.manual_seed(0)
    config = MamoConfig.tiny(
        vocab_size=len(tokenizer),
        special_token_ids=special_token_ids(tokenizer),
        image_size=32,
        patch_size=8,
        **weights,
    )
    return MamoForPreTraining(config)


def train(model, inputs):
    parameters = [parameter for parameter in model.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=LEARNING_RATE, weight_decay=0.02)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / WARMUP) * 0.5 * (1 + math.cos(math.pi * step / STEPS))
    )
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(STEPS):
        rows = torch.randint(0, inputs["input_ids"].shape[0], (BATCH_SIZE,), generator=generator)
        batch = {name: value[rows] for name, value in inputs.items()}
        length = int(batch["attention_mask"].sum(1).max())
        batch["input_ids"], batch["attention_mask"] = (
            batch["input_ids"][:, :length],
            batch["attention_mask"][:, :length],
        )
        loss = model(**batch, generator=generator).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        model.update_teacher()
    return model.eval()


@torch.no_grad()
def evaluate(model, held_out, held_out_words):
    """Zero-shot ITC image→text R@1, MLM accuracy on the masked colour and shape words, and every loss."""
    model.eval()
    images = model.mamo.get_image_features(held_out["pixel_values"]).pooler_output
    texts = model.mamo.get_text_features(
        held_out["input_ids"], attention_mask=held_out["attention_mask"]
    ).pooler_output
    recall_at_1 = ((images @ texts.t()).argmax(dim=1) == torch.arange(images.shape[0])).float().mean().item()
    weights = {name: getattr(model.config, name) for name in ("itm_weight", "mlm_weight", "mim_weight", "mrm_weight")}
    model.config.update(dict.fromkeys(weights, 1.0))  # compute every objective, trained or not
    outputs = model(**held_out, text_mask=held_out_words, generator=torch.Generator().manual_seed(0))
    model.config.update(weights)
    losses = {name: round(getattr(outputs, f"loss_{name}").item(), 3) for name in ("itc", "itm", "mlm", "mim", "mrm")}
    return {"itc_r1": recall_at_1, "word_accuracy": outputs.mlm_accuracy.item(), "losses": losses}


@pytest.fixture(scope="module")
def full_mamo(data):
    """Full MAMO, evaluated before training, then trained; shared by the tests that read the trained model."""
    tokenizer, train_inputs, held_out, held_out_words = data
    model = build(tokenizer)
    before = evaluate(model, held_out, held_out_words)
    return before, train(model, train_inputs)


def test_full_mamo_learns_alignment_and_grounded_words_while_itc_alone_learns_only_alignment(data, full_mamo):
    tokenizer, train_inputs, held_out, held_out_words = data
    before, full = full_mamo
    after = evaluate(full, held_out, held_out_words)
    print(f"\nfull MAMO   before {before}\n            after  {after}")
    assert before["itc_r1"] < 0.05 and before["word_accuracy"] < 0.1
    assert after["itc_r1"] > 0.4  # chance 0.01
    assert after["word_accuracy"] > 0.35  # chance about 0.2 (1/6 for a colour, 1/4 for a shape)
    assert after["losses"]["mlm"] < before["losses"]["mlm"] / 2

    itc_only = build(tokenizer, **ITC_ONLY)
    itc_before = evaluate(itc_only, held_out, held_out_words)
    itc_after = evaluate(train(itc_only, train_inputs), held_out, held_out_words)
    print(f"ITC only    before {itc_before}\n            after  {itc_after}")
    assert itc_after["itc_r1"] > 0.4
    assert itc_after["word_accuracy"] < 0.1  # the MLM head never trained
    assert itc_after["losses"]["mlm"] > 0.8 * itc_before["losses"]["mlm"]


def test_zero_shot_colour_classification_of_new_scenes_is_far_above_chance(data, full_mamo):
    """The trained model names the colour of 120 unseen single-object scenes from the prompts "a red", "a blue", ...
    (chance 1/6) by ITC, with no training on such prompts."""
    tokenizer = data[0]
    _, model = full_mamo
    processor = MamoProcessor(
        image_processor=MamoImageProcessorPil(size={"height": 32, "width": 32}), tokenizer=tokenizer
    )
    rng = random.Random(7)
    scenes = [random_scene(rng, max_objects=1)[0] for _ in range(120)]
    images = [draw_scene([scene], image_size=32) for scene in scenes]
    ranked = zero_shot_classify(model, processor, images, list(COLOURS), hypothesis_template="a {}")
    accuracy = sum(labels[0]["label"] == scene.colour for labels, scene in zip(ranked, scenes)) / len(scenes)
    print(f"\nzero-shot colour accuracy {accuracy:.3f} (chance {1 / len(COLOURS):.3f})")
    assert accuracy > 0.5
