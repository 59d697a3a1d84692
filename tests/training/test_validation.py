"""Arguments checked before any work (`mamo_hf.training.validation`): `InvalidArgumentError` naming the flag, one line
from `mamo-hf pretrain`, no model built and nothing written."""

import os

import pytest
from helpers import good_sample, one_line_error, raw_parquet, run_main, shard_run, tiny_run, write_tar

from mamo_hf import MamoForPreTraining
from mamo_hf.training import InvalidArgumentError, pretrain

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"batch_size": 0}, "--batch-size must be an integer from 1 to 65536, got 0"),
        ({"gradient_accumulation_steps": -1}, "--gradient-accumulation-steps must be an integer from 1 to 65536"),
        ({"max_steps": 0}, "--max-steps must be an integer from 1 to 1000000000"),
        ({"learning_rate": float("nan")}, "--learning-rate must be a finite number > 0, got nan"),
        ({"learning_rate": -1e-4}, "--learning-rate must be a finite number > 0"),
        ({"min_learning_rate": 1.0}, "--min-learning-rate \\(1.0\\) must not exceed --learning-rate"),
        ({"warmup_steps": -5}, "--warmup-steps must be an integer from 0 to 1000000000"),
        (
            {"model_config": {"mim_wieght": 0.0}},
            "--model-config has unknown MamoConfig field\\(s\\) \\['mim_wieght'\\]",
        ),
        ({"train_file": ["nowhere.json"]}, "--train-file nowhere.json: no such file"),
        ({"mixed_precision": "fp8"}, "--mixed-precision must be no, bf16 or fp16"),
    ],
)
def test_bad_arguments_are_refused_before_any_work(tmp_path, monkeypatch, overrides, message):
    monkeypatch.setattr(MamoForPreTraining, "__init__", lambda self, config: pytest.fail("work started"))
    with pytest.raises(InvalidArgumentError, match=message):
        pretrain(tiny_run(tmp_path, **overrides))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            {"train_file": ["nowhere/{00000..00099}.tar"]},
            r"--train-file nowhere/\{00000\.\.00099\}\.tar: no file matches",
        ),
        ({"train_file": ["nowhere/*.parquet"]}, r"--train-file nowhere/\*\.parquet: no file matches this pattern"),
        ({"max_steps": None}, "--max-steps is needed: --train-file names WebDataset shards"),
        ({"train_file": ["SHARDS/00000.tar", "SHARDS/a.parquet"]}, "--train-file mixes WebDataset"),
        ({"shuffle_buffer": -1}, "--shuffle-buffer must be an integer from 0 to 10000000"),
    ],
)
def test_bad_shard_arguments_are_refused_before_any_work(tmp_path, monkeypatch, overrides, message):
    from mamo_hf import MamoForPreTraining

    write_tar(tmp_path / "00000.tar", [good_sample(0)])
    raw_parquet(tmp_path / "a.parquet", 2)
    overrides["train_file"] = [
        file.replace("SHARDS", str(tmp_path)) for file in overrides.get("train_file", [str(tmp_path / "*.tar")])
    ]
    monkeypatch.setattr(MamoForPreTraining, "__init__", lambda self, config: pytest.fail("work started"))
    with pytest.raises(InvalidArgumentError, match=message):
        pretrain(shard_run(tmp_path, **overrides))


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--image-size", "0"], "--image-size must be an integer from 16 to 4096"),
        (["--image-size", "100000"], "--image-size must be an integer from 16 to 4096"),
        (["--train-file", "{folder}/c.json", "--image-column", "img"], "--image-column applies to --hf-dataset and"),
        (["--train-file", "{folder}/c.json", "--text-column", "text"], "caption files name them with the fields"),
        (["--report-to", "wandb"], "--report-to must be some of tensorboard, csv"),
        (["--hf-dataset", "{folder}", "--train-file", "{folder}/c.json"], "--hf-dataset and --train-file"),
        (["--hub-model-id", "me/model"], "--hub-model-id is only used with --push-to-hub"),
        (["--init", "./no/such/folder"], "--init ./no/such/folder: no such folder"),
        (["--tokenizer", "/no/such/tokenizer"], "--tokenizer /no/such/tokenizer: no such folder"),
        (["--caption-negatives", "-1"], "--caption-negatives must be an integer from 0 to 16"),
        (["--demo-templates", "poem"], "--demo-templates must be some of list, relation"),
        (["--model", "base"], "--model base needs --tokenizer (e.g. bert-base-uncased), or start from --init"),
        (["--seed", "-1"], "--seed must be an integer from 0 to 4294967295, got -1"),
        (["--seed", "99999999999"], "--seed must be an integer from 0 to 4294967295"),
        (["--demo-pairs", "1000000000000"], "--demo-pairs must be an integer from 1 to 10000000"),
        (["--max-words", "0"], "--max-words must be an integer from 1 to 512, got 0"),
        (["--image-size", "33"], "--image-size 33 must be a multiple of the patch size 16"),
        (["--image-root", "{folder}/c.json"], "--image-root {folder}/c.json: not a folder"),
        (["--train-file", "{folder}"], "--train-file {folder}: a folder, not a file; name the files in it"),
        (["--train-file", "{folder}/pipe"], "--train-file {folder}/pipe: not a regular file (a pipe or a device)"),
        (
            [part for name in ("itc", "itm", "mlm", "mim", "mrm") for part in ("--model-config", f"{name}_weight=0")],
            "--model-config turns every objective off",
        ),
    ],
)
def test_bad_pretraining_arguments_are_one_line_before_any_work(tmp_path, capsys, arguments, expected):
    (tmp_path / "c.json").write_text("[]")
    os.mkfifo(tmp_path / "pipe")  # reading it would wait for a writer forever
    arguments = [value.format(folder=tmp_path) for value in arguments]
    code, stderr = run_main(capsys, "pretrain", "--output-dir", str(tmp_path / "run"), *arguments)
    assert code == 1
    one_line_error(None, stderr, "mamo-hf pretrain: error:", expected.format(folder=tmp_path))
    assert not (tmp_path / "run" / "logs").exists()


def test_a_model_config_value_of_the_wrong_type_is_one_line(tmp_path, capsys):
    code, stderr = run_main(
        capsys, "pretrain", "--output-dir", str(tmp_path / "run"), "--model-config", "mim_weight=abc"
    )
    assert code == 1
    one_line_error(None, stderr, "--model-config: Field 'mim_weight' with value 'abc'")


def test_every_count_flag_has_an_upper_bound(tmp_path):
    with pytest.raises(InvalidArgumentError, match="--caption-negatives must be an integer from 0 to 16, got 1000000"):
        pretrain(tiny_run(tmp_path, caption_negatives=1_000_000))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"caption_negative_families": ["swap_objects"]},
            "--caption-negative-families applies only with --caption-neg",
        ),
        (
            {"eval_pairs": 50, "train_file": ["{file}"]},
            "--eval-pairs draws held-out pairs from the built-in demo data",
        ),
    ],
)
def test_a_flag_that_would_be_ignored_is_refused(tmp_path, overrides, message):
    """Issue 29: both were ignored without a word."""
    annotations = tmp_path / "captions.json"
    annotations.write_text("[]")
    overrides = {name: [annotations.as_posix()] if value == ["{file}"] else value for name, value in overrides.items()}
    with pytest.raises(InvalidArgumentError, match=message):
        pretrain(tiny_run(tmp_path, **overrides))
