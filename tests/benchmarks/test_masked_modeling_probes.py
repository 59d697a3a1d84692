"""`benchmarks/masked_modeling_probes.py` end to end on a tiny untrained model at 32 px, with few scenes and steps."""

import hashlib
import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import torch
from helpers import BENCHMARKS

from mamo_hf import MamoForPreTraining
from mamo_hf.data import tiny_config_and_processor

SCRIPT = BENCHMARKS / "masked_modeling_probes.py"


def probes_script():
    spec = importlib.util.spec_from_file_location("masked_modeling_probes", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def folder_digest(folder: Path) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.iterdir())}


def test_scoring_a_checkpoint_runs_every_instrument_leaves_the_folder_alone_and_is_deterministic(tmp_path):
    script = probes_script()
    torch.manual_seed(0)
    config, processor = tiny_config_and_processor(32, 8)
    MamoForPreTraining(config).save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    before = folder_digest(tmp_path)
    small = script.FineTune(steps=3, batch_size=8, warmup_steps=1)
    settings = replace(
        script.Settings(),
        dense_fit_scenes=12,
        dense_test_scenes=6,
        grounding_train_scenes=20,
        grounding_validation_scenes=3,
        grounding_test_scenes=4,
        grounding_fine_tune=small,
        retrieval_train_images=12,
        retrieval_test_images=6,
        retrieval_fine_tune=small,
    )
    result = script.score_checkpoint(tmp_path, seed=1, settings=settings)
    assert folder_digest(tmp_path) == before
    json.dumps(result)
    assert result["dense_probe"]["test_scenes"] == 6 and set(result["dense_probe"]) >= {"colour", "shape"}
    grounding = result["grounding"]
    assert grounding["num_samples"] >= 8 and 0 <= grounding["accuracy"] <= 100 and grounding["fine_tune"]["steps"] == 3
    assert 25 < grounding["random_baseline"] <= 50  # two or three boxes per expression
    retrieval = result["retrieval"]
    assert (retrieval["test_images"], retrieval["test_texts"], retrieval["fine_tune"]["steps"]) == (6, 12, 3)
    assert {"itc_txt_r1", "itc_img_r1", "itm_txt_r1", "itm_img_r1"} <= set(retrieval["after"])
    again = script.score_checkpoint(tmp_path, seed=1, settings=settings)
    for name in ("dense_probe", "grounding", "retrieval"):
        for run in (result, again):
            run[name].get("fine_tune", {}).pop("seconds", None)
        assert again[name] == result[name]


def test_shuffled_batches_are_epochs_of_seeded_permutations():
    script = probes_script()
    batches = script.shuffled_batches(10, 4, 5, seed=0)
    assert batches.shape == (5, 4)
    first_epoch, second_epoch = batches.flatten()[:10], batches.flatten()[10:20]
    assert sorted(first_epoch.tolist()) == sorted(second_epoch.tolist()) == list(range(10))
    assert torch.equal(batches, script.shuffled_batches(10, 4, 5, seed=0))
    assert script.binomial_standard_error(50.0, 100) == 5.0
