"""The objective table is the one source of truth about the pre-training objectives: a sixth objective is a row, its
loss method and its config weight, and everything else (validation of the weight, which views and teacher passes
run, the output, the loss the training loop logs) follows from them."""

import pytest
import torch
from helpers import random_pairs, tiny_config

from mamo_hf import FusionView, MamoConfig, MamoForPreTraining, PretrainingObjective
from mamo_hf.modeling_mamo import OBJECTIVES, PRETRAINING_OBJECTIVES, ObjectiveOutput
from mamo_hf.training.loop import logged_values


class ToyConfig(MamoConfig):
    """A config with the sixth objective's weight: the only change a new objective makes to the config."""

    toy_weight: float | int = 1.0


class ToyForPreTraining(MamoForPreTraining):
    """A sixth objective that reads the masked-text view: its row and its loss method."""

    config_class = ToyConfig
    objective_table = (*PRETRAINING_OBJECTIVES, PretrainingObjective("toy", "a toy", views=(FusionView.MASKED_TEXT,)))

    def toy_loss(self, encodings) -> ObjectiveOutput:
        return ObjectiveOutput(encodings.fused_token_states().pow(2).mean())


def toy_config(**weights) -> ToyConfig:
    base = tiny_config().to_dict()
    return ToyConfig(**{name: base[name] for name in MamoConfig.__dataclass_fields__ if name in base} | weights)


def test_a_sixth_objective_is_computed_weighted_and_returned_from_its_row_method_and_weight():
    torch.manual_seed(0)
    model = ToyForPreTraining(toy_config(toy_weight=0.5)).train()
    outputs = model(**random_pairs(model.config), generator=torch.Generator().manual_seed(0))
    assert set(outputs.losses) == {*OBJECTIVES, "toy"}
    weights = {name: getattr(model.config, f"{name}_weight") for name in outputs.losses}
    expected = sum(weights[name] * loss for name, loss in outputs.losses.items())
    torch.testing.assert_close(outputs.loss, expected)
    assert "loss_toy" in logged_values(outputs)
    for name in OBJECTIVES:  # the paper's objectives keep their named fields
        assert torch.equal(getattr(outputs, f"loss_{name}"), outputs.losses[name])


def test_the_views_a_sixth_objective_reads_run_only_while_it_is_on():
    """With MLM and MRM off, only the toy objective reads (I, T̃): its weight decides whether that view runs."""
    off = {"mlm_weight": 0.0, "mim_weight": 0.0, "mrm_weight": 0.0}
    for toy_weight, runs in ((1.0, True), (0.0, False)):
        model = ToyForPreTraining(toy_config(toy_weight=toy_weight, **off)).train()
        batch = random_pairs(model.config)
        encodings = model.encode_views(batch["pixel_values"], batch["input_ids"], batch["attention_mask"])
        assert (FusionView.MASKED_TEXT.label in encodings.fused) is runs
        assert (encodings.text_mask is not None) is runs
        assert ("toy" in model(**batch).losses) is runs


def test_the_weight_of_a_sixth_objective_is_validated_with_the_others():
    assert "toy_weight" in ToyConfig.objective_weight_names()
    with pytest.raises(ValueError, match="toy_weight"):
        toy_config(toy_weight=-1.0)


def test_every_objective_has_a_loss_method_and_a_config_weight():
    for row in PRETRAINING_OBJECTIVES:
        assert callable(getattr(MamoForPreTraining, f"{row.name}_loss")), row.name
        assert f"{row.name}_weight" in MamoConfig.objective_weight_names(), row.name
    assert [row.name for row in PRETRAINING_OBJECTIVES if row.masked_modeling] == ["mim", "mrm"]
