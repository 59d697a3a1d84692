"""Reliability, round 2: bad inputs get one line naming the problem, nothing hangs, nothing is lost silently.

Each test is one defect class of issue 18; the cases that hung on the old code run in a subprocess with a timeout,
so that a regression fails instead of stalling the suite.
"""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pytest
from accelerate.state import AcceleratorState
from helpers import logged, poison_batches, tiny_run
from PIL import Image

from mamo_hf.data import CaptionDataset, load_image
from mamo_hf.image_processing_mamo import to_rgb_array
from mamo_hf.training import CheckpointError, OutputDirInUseError, list_checkpoints, pretrain
from mamo_hf.training.manifest import RunManifest
from mamo_hf_cli import main

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


def cli(*arguments: str, timeout: int = 240) -> subprocess.CompletedProcess:
    """`mamo-hf ARGUMENTS` in a fresh process (a hang fails the test through the timeout)."""
    return subprocess.run(
        [sys.executable, "-m", "mamo_hf_cli", *arguments],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "TQDM_DISABLE": "1"},
        stdin=subprocess.DEVNULL,
    )


def one_line_error(result: subprocess.CompletedProcess | None, stderr: str, *expected: str) -> None:
    assert "Traceback" not in stderr, stderr[-2000:]
    lines = [line for line in stderr.splitlines() if "error" in line]
    assert len(lines) == 1, stderr[-2000:]
    for text in expected:
        assert text in lines[0], lines[0]


# ----------------------------------------------------------------------------------------------------------------
# Hangs
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "batching", [["--batch-size", "64"], ["--batch-size", "4", "--gradient-accumulation-steps", "8"]]
)
def test_a_step_that_needs_more_pairs_than_the_data_has_is_refused_instead_of_hanging(tmp_path, batching):
    result = cli(
        "pretrain", "--output-dir", str(tmp_path / "run"), "--image-size", "32", "--demo-pairs", "16",
        "--eval-pairs", "0", "--max-steps", "3", "--num-workers", "0", "--report-to", "csv", *batching,
    )  # fmt: skip
    assert result.returncode == 1
    named = "--batch-size 4 × --gradient-accumulation-steps 8:" if len(batching) > 2 else "--batch-size 64:"
    one_line_error(result, result.stderr, f"mamo-hf pretrain: error: {named}", "16 pairs make no full")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs (POSIX)")
def test_a_fifo_where_an_image_should_be_is_a_skipped_record_not_a_hang(tmp_path):
    Image.new("RGB", (8, 8), (200, 0, 0)).save(tmp_path / "red.png")
    os.mkfifo(tmp_path / "pipe.png")
    records = [{"image": "pipe.png", "caption": "a pipe"}, {"image": "red.png", "caption": "a red square"}]
    (tmp_path / "captions.json").write_text(json.dumps(records))
    code = (
        "import sys; from mamo_hf.data import CaptionDataset; item = CaptionDataset(sys.argv[1])[0]; "
        "print(item['caption'], '|', item['skipped'][0].reason)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "captions.json")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "a red square | not an image file: a folder, a FIFO or a device"


# ----------------------------------------------------------------------------------------------------------------
# A run folder belongs to one run
# ----------------------------------------------------------------------------------------------------------------


def metrics_steps(run_dir) -> list[int]:
    with open(Path(run_dir) / "logs" / "mamo" / "metrics.csv") as handle:
        return [int(row["step"]) for row in csv.DictReader(handle) if row["name"] == "train/loss"]


def test_a_fresh_run_refuses_a_folder_with_another_runs_results_and_overwriting_replaces_them(tmp_path):
    first = tiny_run(tmp_path, checkpoint_every=3, max_steps=6)
    pretrain(first)
    before = (tmp_path / "run" / "model.safetensors").read_bytes()
    AcceleratorState._reset_state(reset_partial_state=True)
    with pytest.raises(OutputDirInUseError, match="--resume latest.*--overwrite-output-dir"):
        pretrain(tiny_run(tmp_path, checkpoint_every=2, max_steps=4, seed=9))
    assert (tmp_path / "run" / "model.safetensors").read_bytes() == before  # nothing of the first run touched
    assert sorted(path.name for path in (tmp_path / "run").glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-6"]
    AcceleratorState._reset_state(reset_partial_state=True)
    pretrain(tiny_run(tmp_path, checkpoint_every=2, max_steps=4, seed=9, overwrite_output_dir=True))
    assert sorted(path.name for path in (tmp_path / "run").glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert metrics_steps(tmp_path / "run") == [1, 2, 3, 4]  # one log, the new run's


def test_a_rerun_after_a_kill_before_the_first_checkpoint_does_not_log_steps_twice(tmp_path):
    (tmp_path / "run" / "logs" / "mamo").mkdir(parents=True)
    (tmp_path / "run" / "logs" / "mamo" / "metrics.csv").write_text("step,name,value\n1,train/loss,9.0\n")
    RunManifest(tmp_path / "run").record("logs/mamo")  # what the killed run had recorded of its folder
    with pytest.raises(OutputDirInUseError, match="logs"):
        pretrain(tiny_run(tmp_path))
    AcceleratorState._reset_state(reset_partial_state=True)
    pretrain(tiny_run(tmp_path, overwrite_output_dir=True))
    assert metrics_steps(tmp_path / "run") == list(range(1, 7))


# ----------------------------------------------------------------------------------------------------------------
# Resume checks its arguments against the checkpoint's
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"batch_size": 4}, "--batch-size was 8, now 4"),
        ({"seed": 4}, "--seed was 3, now 4"),
        ({"model_config": {"mim_weight": 0.0}}, "--model-config"),
        ({"demo_pairs": 128}, "--demo-pairs"),
        ({"learning_rate": 5e-4}, "--learning-rate was 0.001, now 0.0005"),
    ],
)
def test_resume_refuses_changed_arguments_naming_them(tmp_path, change, named):
    pretrain(tiny_run(tmp_path, checkpoint_every=3, max_steps=3))
    AcceleratorState._reset_state(reset_partial_state=True)
    with pytest.raises(CheckpointError, match="--allow-changed-arguments") as raised:
        pretrain(tiny_run(tmp_path, checkpoint_every=3, max_steps=6, resume="latest", **change))
    assert named in str(raised.value)


def test_resume_with_allowed_changes_uses_the_new_learning_rate(tmp_path):
    pretrain(tiny_run(tmp_path, checkpoint_every=3, max_steps=3, warmup_steps=0))
    AcceleratorState._reset_state(reset_partial_state=True)
    arguments = {"checkpoint_every": 3, "max_steps": 4, "warmup_steps": 0, "resume": "latest"}
    pretrain(tiny_run(tmp_path, learning_rate=1e-4, min_learning_rate=1e-5, allow_changed_arguments=True, **arguments))
    # Step 4 ends a 4-step cosine from the new peak 1e-4 at its floor 1e-5; from the old peak of 1e-3 it would end
    # at 1e-4 (the floor is a tenth of the peak).
    assert logged(tmp_path / "run", "train/learning_rate")[4] == pytest.approx(1e-5)


# ----------------------------------------------------------------------------------------------------------------
# Data read right: byte-order marks, 16-bit images
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".csv"])
def test_annotation_files_with_a_byte_order_mark_keep_their_first_record(tmp_path, suffix):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    records = [{"image": "a.png", "caption": "first"}, {"image": "a.png", "caption": "second"}]
    if suffix == ".json":
        text = json.dumps(records)
    elif suffix == ".jsonl":
        text = "\n".join(json.dumps(record) for record in records)
    else:
        text = "image,caption\n" + "\n".join(f"{r['image']},{r['caption']}" for r in records)
    (tmp_path / f"captions{suffix}").write_text("\ufeff" + text, encoding="utf-8")
    dataset = CaptionDataset(tmp_path / f"captions{suffix}")
    assert [dataset[index]["caption"] for index in range(len(dataset))] == ["first", "second"]
    assert dataset.annotation_errors == []


def test_training_reads_16_bit_and_transparent_images_as_the_processor_does(tmp_path):
    ramp = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16).astype(np.uint16)  # 0 .. 65520
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))  # fully transparent red
    rgba.save(tmp_path / "clear.png")
    deep = load_image(str(tmp_path / "deep.png"))
    assert np.array_equal(np.array(deep), to_rgb_array(Image.open(tmp_path / "deep.png")))
    assert 0 < np.array(deep).mean() < 255  # not saturated
    assert np.array(load_image(str(tmp_path / "clear.png")))[0, 0].tolist() == [255, 255, 255]


# ----------------------------------------------------------------------------------------------------------------
# A NaN streak at the very end
# ----------------------------------------------------------------------------------------------------------------


def test_non_finite_last_steps_leave_the_summary_with_the_last_applied_losses(tmp_path, monkeypatch):
    poison_batches(monkeypatch, {5, 6})  # steps 5 and 6 of 6
    summary = pretrain(tiny_run(tmp_path)).summary
    assert summary["nonfinite_steps"] == [5, 6] and summary["final_losses_step"] == 4
    assert all(np.isfinite(value) for value in summary["final_losses"].values())
    card = (tmp_path / "run" / "README.md").read_text()
    assert "nan" not in card.lower()


# ----------------------------------------------------------------------------------------------------------------
# One line naming the problem, before any work
# ----------------------------------------------------------------------------------------------------------------


def run_main(capsys, *arguments):
    try:
        code = main(list(arguments))
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
        if not isinstance(exit_.code, int):
            print(exit_.code, file=sys.stderr)
    return code, capsys.readouterr().err


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


@pytest.mark.parametrize(
    ("offline", "token", "expected"),
    [("1", "hf_any", "HF_HUB_OFFLINE=1 is set"), ("0", None, "no Hub token: run `hf auth login` or set HF_TOKEN")],
)
def test_a_push_that_would_fail_is_refused_before_training_and_by_mamo_hf_push(
    tmp_path, capsys, monkeypatch, offline, token, expected
):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", offline == "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    if token:
        monkeypatch.setenv("HF_TOKEN", token)
    run = tmp_path / "run"
    code, stderr = run_main(capsys, "pretrain", "--output-dir", str(run), "--push-to-hub", "--hub-model-id", "me/m")
    assert code == 1
    one_line_error(None, stderr, "mamo-hf pretrain: error: --push-to-hub would fail after training:", expected)
    assert not (run / "logs").exists()
    (tmp_path / "saved").mkdir()
    (tmp_path / "saved" / "config.json").write_text("{}")
    code, stderr = run_main(capsys, "push", str(tmp_path / "saved"), "me/m")
    assert code == 1
    one_line_error(None, stderr, "mamo-hf push: error: me/m:", expected)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "cannot read it"),
        ("a: [", "not valid YAML (line"),
        ("- 1\n- 2\n", "expected a mapping"),
        ('augment: "no"\n', "augment must be bool, got 'no'"),
        ("report_to: csv\n", "report_to must be list[str], got 'csv'"),
        ("batch_size: four\n", "batch_size must be int, got 'four'"),
        ("model_config: 5\n", "model_config must be dict, got 5"),
        ("train_file: 5\n", "train_file must be list[str], got 5"),
    ],
)
def test_bad_config_files_are_one_line(tmp_path, capsys, content, expected):
    config = tmp_path / "run.yaml"
    if content is not None:
        config.write_text(content)
    code, stderr = run_main(capsys, "pretrain", "--config", str(config))
    assert code != 0
    one_line_error(None, stderr, f"mamo-hf pretrain: error: --config {config}", expected)


@pytest.mark.parametrize(
    ("output", "arguments", "expected"),
    [
        ("", [], "--output is empty"),
        ("file", [], "is a file: give a new or empty folder"),
        ("full", [], "is a folder that holds files: give a new or empty folder"),
        ("new", ["--image-size", "100000"], "--image-size: must be from 8 to 4096"),
        ("file/sub", [], "--output {target}: cannot write there ([Errno 20] Not a directory"),
    ],
)
def test_demo_data_writes_only_into_a_new_or_empty_folder_and_refuses_huge_images(
    tmp_path, capsys, output, arguments, expected
):
    (tmp_path / "file").write_text("mine")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "captions.json").write_text("[]")
    target = str(tmp_path / output) if output else ""
    code, stderr = run_main(capsys, "demo-data", "--output", target, "--num-pairs", "2", *arguments)
    assert code != 0 and "Traceback" not in stderr
    one_line_error(None, stderr, expected.format(target=target))
    assert (tmp_path / "file").read_text() == "mine" and os.listdir(tmp_path / "full") == ["captions.json"]
    assert not (tmp_path / "new").exists()


def test_resume_with_max_steps_below_the_checkpoint_is_refused_and_changes_nothing(tmp_path, capsys):
    arguments = ["pretrain", "--output-dir", str(tmp_path / "run"), "--batch-size", "4", "--image-size", "32",
                 "--eval-pairs", "0", "--report-to", "csv", "--demo-pairs", "16", "--num-workers", "0"]  # fmt: skip
    assert run_main(capsys, *arguments, "--max-steps", "2", "--checkpoint-every", "1")[0] == 0
    summary = (tmp_path / "run" / "pretraining_summary.json").read_text()
    code, stderr = run_main(capsys, *arguments, "--max-steps", "1", "--resume", "latest", "--allow-changed-arguments")
    assert code == 1
    one_line_error(None, stderr, "mamo-hf pretrain: error: --max-steps 1 is below the step of", "(2)")
    assert (tmp_path / "run" / "pretraining_summary.json").read_text() == summary


def test_a_training_state_of_the_wrong_shape_is_a_checkpoint_error(tmp_path, capsys):
    arguments = ["pretrain", "--output-dir", str(tmp_path / "run"), "--batch-size", "4", "--image-size", "32",
                 "--eval-pairs", "0", "--report-to", "csv", "--demo-pairs", "16", "--num-workers", "0"]  # fmt: skip
    assert run_main(capsys, *arguments, "--max-steps", "2", "--checkpoint-every", "1")[0] == 0
    (tmp_path / "run" / "checkpoint-2" / "training_state.json").write_text("[1, 2]")
    code, stderr = run_main(capsys, *arguments, "--max-steps", "3", "--resume", "latest")
    assert code == 1
    one_line_error(None, stderr, "training_state.json is unreadable (not an object with an integer 'step')")


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--num-pairs", "-3"], "--num-pairs: must be from 1 to 10000000, got -3"),
        (["--num-pairs", "10000000000000"], "--num-pairs: must be from 1 to 10000000"),  # ran for hours before
        (["--seed", "-1"], "--seed: must be from 0 to 4294967295, got -1"),  # as pretrain's --seed
        (["--seed", "999999999999999999999"], "--seed: must be from 0 to 4294967295"),
    ],
)
def test_demo_data_refuses_counts_and_seeds_out_of_range(tmp_path, capsys, arguments, expected):
    code, stderr = run_main(capsys, "demo-data", "--output", str(tmp_path / "data"), *arguments)
    assert code == 2 and expected in stderr
    assert not (tmp_path / "data").exists()


def test_own_captions_with_the_demo_vocabulary_are_refused_naming_the_tokenizer_flag(tmp_path, capsys):
    Image.new("RGB", (32, 32)).save(tmp_path / "a.jpg")
    captions = [
        "A man riding a wave on top of a surfboard.",
        "Two giraffes standing next to each other in a zoo enclosure.",
        "A kitchen with wooden cabinets and a stainless steel refrigerator.",
    ]
    records = [{"image": "a.jpg", "caption": captions[index % 3]} for index in range(24)]
    (tmp_path / "coco.json").write_text(json.dumps(records))
    code, stderr = run_main(
        capsys, "pretrain", "--output-dir", str(tmp_path / "run"), "--train-file", str(tmp_path / "coco.json"),
        "--image-size", "32", "--batch-size", "8", "--max-steps", "1", "--eval-pairs", "0", "--num-workers", "0",
    )  # fmt: skip
    assert code == 1
    one_line_error(None, stderr, "--train-file:", "unknown to the built-in demo tokenizer", "pass --tokenizer")


def write_bad_annotation(folder: Path, kind: str) -> Path:
    records = json.dumps([{"image": "a.png", "caption": "a red circle"}])
    files = {
        "not a list": ("c.json", json.dumps({"image": "a.png"}).encode()),
        "empty": ("c.json", b""),
        "UTF-16": ("c.json", records.encode("utf-16")),
        "unknown suffix": ("c.txt", b"a.png,a red circle"),
        "broken Parquet": ("c.parquet", b"PAR1garbagePAR1"),
    }
    name, data = files[kind]
    (folder / name).write_bytes(data)
    return folder / name


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("not a list", "expected a JSON list"),
        ("empty", "not valid JSON"),
        ("UTF-16", "not UTF-8 text"),
        ("unknown suffix", "unknown format '.txt'"),
        ("broken Parquet", "not a readable Parquet file"),
    ],
)
def test_unreadable_annotation_files_and_shards_are_one_line_naming_the_file(tmp_path, capsys, kind, expected):
    Image.new("RGB", (16, 16)).save(tmp_path / "a.png")
    path = write_bad_annotation(tmp_path, kind)
    code, stderr = run_main(
        capsys, "pretrain", "--output-dir", str(tmp_path / "run"), "--train-file", str(path), "--max-steps", "2",
        "--image-size", "32", "--eval-pairs", "0", "--num-workers", "0", "--report-to", "csv",
    )  # fmt: skip
    assert code == 1
    one_line_error(None, stderr, "mamo-hf pretrain: error: --train-file:", path.name, expected)


@pytest.mark.parametrize("workers", ["0", "1"])
def test_strict_stops_at_a_bad_record_with_one_line_naming_it(tmp_path, capsys, workers):
    Image.new("RGB", (16, 16), (200, 0, 0)).save(tmp_path / "a.png")
    records = [{"image": "gone.png", "caption": "a red circle"}] + [{"image": "a.png", "caption": "a red square"}] * 15
    (tmp_path / "c.json").write_text(json.dumps(records))
    code, stderr = run_main(
        capsys, "pretrain", "--output-dir", str(tmp_path / "run"), "--train-file", str(tmp_path / "c.json"),
        "--strict", "--batch-size", "4", "--max-steps", "2", "--image-size", "32", "--eval-pairs", "0",
        "--num-workers", workers, "--report-to", "csv",
    )  # fmt: skip
    assert code == 1
    one_line_error(
        None, stderr, f"mamo-hf pretrain: error: --strict: Bad record {tmp_path / 'c.json'}, record 0, image",
        "gone.png: missing image file. Fix or remove it, or drop --strict to skip bad records (they are counted and "
        "listed).",
    )  # fmt: skip


EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.mark.parametrize(
    ("example", "arguments", "expected"),
    [
        ("finetune_vqa.py", ["--num_answers", "0"], "--num_answers must be an integer >= 1, got 0"),
        ("finetune_vqa.py", ["--train_file", "/no/such.json"], "--train_file /no/such.json: no such file"),
        ("finetune_vqa.py", ["--image_size", "50"], "--image_size 50 must be a multiple of --patch_size 8"),
        ("finetune_retrieval.py", ["--k", "0"], "--k must be an integer >= 1, got 0"),
        ("finetune_retrieval.py", ["--test_file", "/no/such.json"], "--test_file /no/such.json: no such file"),
        ("finetune_nlvr2.py", ["--train_samples", "0"], "--train_samples must be an integer >= 1"),
        ("finetune_nlvr2.py", ["--init", "./no/such/model"], "--init ./no/such/model: no such folder"),
        ("grounding.py", ["--train_scenes", "0"], "--train_scenes must be an integer >= 1, got 0"),
        ("grounding.py", ["--refs", "{file}"], "--refs is evaluated with a fine-tuned model: add --checkpoint"),
        ("pretrain_with_trainer.py", ["--train_pairs", "-1"], "--train_pairs must be an integer >= 1, got -1"),
        ("pretrain_with_trainer.py", ["--image_size", "40"], "--image_size 40 must be a multiple of --patch_size 16"),
        ("finetune_nlvr2.py", ["--image_size", "50"], "--image_size 50 must be a multiple of 4: a model from scratch"),
        ("finetune_retrieval.py", ["--image_size", "2"], "--image_size 2 must be a multiple of 4"),
        ("finetune_vqa.py", ["--train_file", "{file}"], "--train_file needs --test_file too"),
        ("finetune_nlvr2.py", ["--test_file", "{file}"], "--test_file needs --train_file too"),
        ("finetune_vqa.py", ["--per_device_train_batch_size", "0"], "--per_device_train_batch_size must be an"),
        ("finetune_retrieval.py", ["--gradient_accumulation_steps", "0"], "--gradient_accumulation_steps must be an"),
        ("finetune_nlvr2.py", ["--learning_rate", "nan"], "--learning_rate must be a finite number >= 0, got nan"),
        ("finetune_vqa.py", ["--num_train_epochs", "-1"], "--num_train_epochs must be a finite number > 0"),
        ("pretrain_with_trainer.py", ["--fp16"], "--fp16 needs a CUDA GPU and none is available"),
        ("grounding.py", ["--max_steps", "0"], "--max_steps must be >= 1: grounding.py draws its batches"),
        ("grounding.py", ["--layer", "2"], "--layer 2: the model has 2 fusion layers, numbered 0 to 1"),
        ("pretrain_with_trainer.py", ["--image_size", "100000"], "--image_size must be at most 4096, got 100000"),
        ("finetune_retrieval.py", ["--init", "{empty}"], "--init {empty}: not a saved model"),
        ("finetune_vqa.py", ["--init", "{vit}"], "--init {vit}: a vit checkpoint, not MAMO"),
        ("grounding.py", ["--checkpoint", "{vit}"], "--checkpoint {vit}: a vit checkpoint, not MAMO"),
        ("grounding.py", ["--checkpoint", "{mamo}"], "--checkpoint is evaluated on RefCOCO+: add --refcoco_files"),
        (
            "grounding.py",
            ["--checkpoint", "{mamo}", "--refcoco_files", "{file}"],
            "--checkpoint is evaluated on RefCOCO+: add --detections (ALBEF's refcoco+/dets.json)",
        ),
        ("finetune_vqa.py", ["--output_dir", "{file}"], "--output_dir {file} is a file; give a folder"),
    ],
)
def test_the_examples_answer_a_bad_argument_with_one_line_naming_it(tmp_path, example, arguments, expected):
    (tmp_path / "refs.p").write_bytes(b"")
    folders = {"empty": tmp_path / "empty", "vit": tmp_path / "vit", "mamo": tmp_path / "mamo"}
    for name, folder in folders.items():
        folder.mkdir()
        if name != "empty":  # what the checks read: the config's model_type
            (folder / "config.json").write_text(json.dumps({"model_type": name}))
    names = {"file": tmp_path / "refs.p", **folders}
    arguments, expected = [value.format(**names) for value in arguments], expected.format(**names)
    if "--output_dir" not in arguments:
        arguments += ["--output_dir", str(tmp_path / "out")]
    result = run_example(example, *arguments)
    assert result.returncode in (1, 2)  # 2: found by the argument parser; 1: against the model it builds
    one_line_error(result, result.stderr, f"{example}: error:", expected)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("example", "files", "expected"),
    [
        ("finetune_vqa.py", "captions.json", "captions.json, record 0: not a VQA record (no question_id"),
        ("finetune_vqa.py", "empty.json", "empty.json: an empty list; expected VQA records"),
        ("finetune_retrieval.py", "broken.json", "broken.json: not valid JSON (line 1, column 1)"),
        ("finetune_nlvr2.py", "empty.json", "empty.json: an empty list; expected NLVR2 records"),
        ("finetune_nlvr2.py", "captions.json", "captions.json, record 0: `images` must list two image paths"),
        ("finetune_nlvr2.py", "pairs.json", "pairs.json: 2 of 2 image files do not exist, the first"),
        ("finetune_vqa.py", "questions.json", "questions.json: 1 of 1 image files do not exist, the first"),
        ("finetune_vqa.py", "numbers.json", "numbers.json, record 0: `question` must be a non-empty string, got 7"),
        ("finetune_vqa.py", "answers.json", "answers.json, record 0: `answer` must be a string or a list of strings"),
        ("finetune_retrieval.py", "empty.json", "No usable records in the annotation files ['"),
        ("finetune_retrieval.py", "gone_images.json", "records in a row from index"),
        (
            "finetune_vqa.py",
            "no_answers.json",
            "no_answers.json: no question has an answer; there is nothing to learn",
        ),
    ],
)
def test_the_examples_answer_a_bad_data_file_with_one_line_naming_it(tmp_path, example, files, expected):
    (tmp_path / "captions.json").write_text(json.dumps([{"image": "a.png", "caption": "a red cube"}]))
    (tmp_path / "empty.json").write_text("[]")
    (tmp_path / "broken.json").write_text("not json")
    pairs = [{"images": ["l.png", "r.png"], "sentence": "two cubes", "label": "True"}]
    (tmp_path / "pairs.json").write_text(json.dumps(pairs))
    (tmp_path / "questions.json").write_text(json.dumps([{"question_id": 1, "question": "q?", "image": "gone.png"}]))
    (tmp_path / "numbers.json").write_text(json.dumps([{"question_id": 1, "question": 7, "image": "a.png"}]))
    answers = [{"question_id": 1, "question": "how many?", "image": "a.png", "answer": [2, 3]}]
    (tmp_path / "answers.json").write_text(json.dumps(answers))
    (tmp_path / "gone_images.json").write_text(json.dumps([{"image": "gone.png", "caption": "a red cube"}] * 9))
    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    unanswered = [{"question_id": index, "question": "what?", "image": "a.png", "answer": []} for index in range(4)]
    (tmp_path / "no_answers.json").write_text(json.dumps(unanswered))
    data = ["--train_file", str(tmp_path / files), "--test_file", str(tmp_path / files), "--image_root", str(tmp_path)]
    result = run_example(example, *data, "--output_dir", str(tmp_path / "out"))
    assert result.returncode == 1
    one_line_error(result, result.stderr, f"{example}: error: --train_file/--test_file:", expected)
    assert not (tmp_path / "out").exists()


def test_the_examples_refuse_push_to_hub_before_training_when_the_upload_would_fail(tmp_path):
    result = run_example("finetune_nlvr2.py", "--push_to_hub", "--output_dir", str(tmp_path / "out"))  # offline
    assert result.returncode == 2
    one_line_error(result, result.stderr, "finetune_nlvr2.py: error: --push_to_hub would fail", "HF_HUB_OFFLINE=1")


def run_example(example: str, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / example), *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


# ----------------------------------------------------------------------------------------------------------------
# A full disk
# ----------------------------------------------------------------------------------------------------------------


def test_a_full_disk_during_a_checkpoint_keeps_the_last_one_and_leaves_nothing_partial(tmp_path, monkeypatch):
    from accelerate import Accelerator

    real_save_state = Accelerator.save_state

    def full_at_step_4(self, output_dir, *args, **kwargs):
        if "checkpoint-4" in str(output_dir):
            Path(output_dir).mkdir(parents=True, exist_ok=True)
            (Path(output_dir) / "model.safetensors").write_bytes(b"half")
            raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0")
        return real_save_state(self, output_dir, *args, **kwargs)

    monkeypatch.setattr(Accelerator, "save_state", full_at_step_4)
    with pytest.raises(CheckpointError, match="could not write the checkpoint-4.*--resume latest"):
        pretrain(tiny_run(tmp_path, checkpoint_every=2))
    folder = tmp_path / "run"
    assert sorted(path.name for path in folder.iterdir() if "checkpoint" in path.name) == ["checkpoint-2"]


def test_a_full_disk_during_the_final_save_leaves_no_config_without_weights(tmp_path, monkeypatch, capsys):
    from mamo_hf import MamoForPreTraining

    def config_then_full(self, folder, *args, **kwargs):
        (Path(folder)).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "config.json").write_text("{}")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(MamoForPreTraining, "save_pretrained", config_then_full)
    code, stderr = run_main(
        capsys, "pretrain", "--output-dir", str(tmp_path / "run"), "--image-size", "32", "--demo-pairs", "64",
        "--batch-size", "8", "--max-steps", "2", "--eval-pairs", "0", "--num-workers", "0", "--report-to", "csv",
    )  # fmt: skip
    assert code == 1
    one_line_error(None, stderr, "could not write the final model (No space left on device)")
    assert not (tmp_path / "run" / "config.json").exists()
    assert not any(path.name.endswith(".tmp") for path in (tmp_path / "run").iterdir())


def write_empty_shard_set(folder: Path) -> Path:
    import tarfile

    tarfile.open(folder / "empty.tar", "w").close()
    return folder / "empty.tar"


def write_empty_captions(folder: Path) -> Path:
    Image.new("RGB", (32, 32), "red").save(folder / "a.png")
    (folder / "c.json").write_text(json.dumps([{"image": "a.png", "caption": "  "}] * 8))
    return folder / "c.json"


@pytest.mark.parametrize("workers", ["0", "1"])
@pytest.mark.parametrize(
    ("write_data", "expected"),
    [(write_empty_shard_set, ""), (write_empty_captions, " 8 records in a row from index")],
)
def test_data_without_a_usable_record_is_one_line_with_or_without_workers(tmp_path, workers, write_data, expected):
    """Not a hang (an empty shard set), nor "Caught ValueError in DataLoader worker" with a traceback in its text (a
    worker re-raising the dataset's error for captions that are all empty): one line naming the flag."""
    result = cli(
        "pretrain", "--output-dir", str(tmp_path / "run"), "--train-file", str(write_data(tmp_path)),
        "--max-steps", "2", "--image-size", "32", "--batch-size", "4", "--eval-pairs", "0", "--num-workers", workers,
        "--report-to", "csv", timeout=180,
    )  # fmt: skip
    assert result.returncode == 1
    one_line_error(result, result.stderr, f"mamo-hf pretrain: error: --train-file:{expected}")


def test_a_dataset_dict_trains_on_its_train_split_and_without_one_is_one_line(tmp_path, capsys):
    import datasets

    Image.new("RGB", (32, 32), "red").save(tmp_path / "a.png")
    split = datasets.Dataset.from_dict({"image": [str(tmp_path / "a.png")] * 8, "caption": ["a red square"] * 8})
    datasets.DatasetDict({"validation": split}).save_to_disk(tmp_path / "no_train")
    code, stderr = run_main(capsys, "pretrain", "--output-dir", str(tmp_path / "run"), "--hf-dataset",
                            str(tmp_path / "no_train"), "--image-size", "32", "--max-steps", "1")  # fmt: skip
    assert code == 1
    one_line_error(None, stderr, "a DatasetDict without a 'train' split (its splits: validation)")
    datasets.DatasetDict({"train": split}).save_to_disk(tmp_path / "with_train")
    code, _ = run_main(
        capsys, "pretrain", "--output-dir", str(tmp_path / "run2"), "--hf-dataset", str(tmp_path / "with_train"),
        "--image-size", "32", "--max-steps", "1", "--batch-size", "4", "--eval-pairs", "0", "--report-to", "csv",
    )  # fmt: skip
    assert code == 0 and (tmp_path / "run2" / "model.safetensors").is_file()


def test_an_hf_dataset_folder_that_cannot_be_loaded_or_has_no_image_column_is_one_line(tmp_path, capsys):
    import datasets

    arguments = ("--image-size", "32", "--max-steps", "1", "--batch-size", "4", "--eval-pairs", "0")
    damaged = tmp_path / "damaged"
    datasets.Dataset.from_dict({"image": ["a.png"], "caption": ["a"]}).save_to_disk(damaged)
    for arrow_file in damaged.glob("*.arrow"):
        arrow_file.unlink()  # what an interrupted copy leaves: the dataset's json files without its data
    code, stderr = run_main(capsys, "pretrain", "--output-dir", str(tmp_path / "run"), "--hf-dataset", str(damaged),
                            *arguments)  # fmt: skip
    assert code == 1
    one_line_error(None, stderr, f"--hf-dataset {damaged}: not a dataset that datasets.load_from_disk can read")
    numbers = tmp_path / "numbers"
    datasets.Dataset.from_dict({"image": [1, 2], "caption": ["a", "b"]}).save_to_disk(numbers)
    code, stderr = run_main(capsys, "pretrain", "--output-dir", str(tmp_path / "run"), "--hf-dataset", str(numbers),
                            *arguments)  # fmt: skip
    assert code == 1
    one_line_error(None, stderr, "--hf-dataset: The image column 'image' holds Value('int64'), not images")


def test_a_damaged_optimizer_state_is_one_line_naming_the_checkpoint_to_resume_instead(tmp_path):
    common = (
        "pretrain", "--output-dir", str(tmp_path / "run"), "--image-size", "32", "--demo-pairs", "64",
        "--eval-pairs", "0", "--batch-size", "4", "--checkpoint-every", "1", "--num-workers", "0",
        "--report-to", "csv",
    )  # fmt: skip
    assert cli(*common, "--max-steps", "2").returncode == 0
    (tmp_path / "run" / "checkpoint-2" / "optimizer.bin").write_bytes(bytes(range(100)))
    result = cli(*common, "--max-steps", "3", "--resume", "latest")
    assert result.returncode == 1
    one_line_error(
        result, result.stderr, "checkpoint-2: the model or optimizer state is unreadable (a damaged file)",
        f"resume from an earlier one with --resume {tmp_path / 'run' / 'checkpoint-1'}",
    )  # fmt: skip
    assert "weights_only" not in result.stderr


def test_a_model_config_value_of_the_wrong_type_is_one_line(tmp_path, capsys):
    code, stderr = run_main(
        capsys, "pretrain", "--output-dir", str(tmp_path / "run"), "--model-config", "mim_weight=abc"
    )
    assert code == 1
    one_line_error(None, stderr, "--model-config: Field 'mim_weight' with value 'abc'")


def test_fp16_on_a_cpu_is_refused_and_the_run_says_its_device_and_precision(tmp_path, capsys):
    code, stderr = run_main(capsys, "pretrain", "--output-dir", str(tmp_path / "run"), "--mixed-precision", "fp16")
    assert code == 1
    one_line_error(None, stderr, "--mixed-precision fp16 needs a GPU")
    AcceleratorState._reset_state(reset_partial_state=True)
    pretrain(tiny_run(tmp_path, "cpu-run", max_steps=1))
    assert "Training on cpu × 1 process(es), precision fp32." in capsys.readouterr().out


@pytest.mark.parametrize("checkpoint_every", ["1", "0"])
def test_ctrl_c_ends_a_run_with_one_line_that_says_how_to_go_on(tmp_path, checkpoint_every):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it, DataLoader worker included) printed some
    thirty lines of KeyboardInterrupt traceback; now one line naming the checkpoint to resume from (or that there is
    none), exit status 130, and the checkpoints on disk stay loadable."""
    import signal
    import time

    run = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "mamo_hf_cli", "pretrain", "--output-dir", str(run), "--image-size", "32",
         "--batch-size", "4", "--max-steps", "100000", "--eval-pairs", "0", "--checkpoint-every", checkpoint_every,
         "--num-workers", "1", "--report-to", "csv"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "TQDM_DISABLE": "1"},
    )  # fmt: skip
    deadline = time.monotonic() + 180
    while not (run / "logs").exists() or (checkpoint_every == "1" and not list(run.glob("checkpoint-*/*.json"))):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.2)
    time.sleep(1)
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-2000:]
    (line,) = [line for line in stderr.splitlines() if "interrupted" in line]
    if checkpoint_every == "1":
        latest = list_checkpoints(run)[-1]
        assert line == f"mamo-hf pretrain: interrupted; continue from {latest.name} with --resume latest."
        from safetensors.torch import load_file

        assert len(load_file(latest / "model.safetensors")) > 100  # whole
        assert json.loads((latest / "training_state.json").read_text())["step"] == int(latest.name.split("-")[1])
    else:
        assert line.endswith("no checkpoint was saved yet: start again with --overwrite-output-dir.")


def test_bad_records_that_share_an_image_are_each_counted_and_named_by_their_record(tmp_path, capsys):
    """The skip report was keyed by the image path: three bad records of one image were "Skipped 1 bad record"."""
    Image.new("RGB", (32, 32), "red").save(tmp_path / "a.png")
    bad = [{"image": "a.png", "caption": caption} for caption in ("", "   ", "\U0001f600")]
    good = [{"image": "a.png", "caption": "a red square"} for _ in range(5)]
    (tmp_path / "c.json").write_text(json.dumps(bad + good))
    summary = pretrain(tiny_run(tmp_path, train_file=[str(tmp_path / "c.json")], max_steps=2)).summary
    assert sorted(summary["skipped_records"]) == [
        f"{tmp_path / 'c.json'}, record {index}, image {tmp_path / 'a.png'}" for index in range(3)
    ]
    assert set(summary["skipped_records"].values()) == {"empty caption"}
    assert "Skipped 3 bad record(s): 3 × empty caption" in capsys.readouterr().out


def test_a_tokenizer_name_that_is_no_folder_says_so_before_the_hub_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, stderr = run_main(capsys, "pretrain", "--output-dir", str(tmp_path / "run"), "--tokenizer", "nope",
                            "--max-steps", "1")  # fmt: skip
    assert code == 1
    one_line_error(None, stderr, "--tokenizer nope: no such folder, and as a Hub name: no usable tokenizer (")


def test_vqa_test_questions_without_answers_are_predicted_and_said_unscored(tmp_path):
    """test-dev has no answers: the run writes its predictions and says that nothing was scored (its last line began
    with an empty accuracy)."""
    for colour in ("red", "blue"):
        Image.new("RGB", (32, 32), colour).save(tmp_path / f"{colour}.png")
    questions = [
        {"question_id": index, "question": "what colour is it?", "image": f"{colour}.png", "answer": [colour]}
        for index, colour in enumerate(["red", "blue"] * 4)
    ]
    (tmp_path / "train.json").write_text(json.dumps(questions))
    (tmp_path / "test.json").write_text(json.dumps([{**question, "answer": []} for question in questions[:2]]))
    result = run_example(
        "finetune_vqa.py", "--train_file", str(tmp_path / "train.json"), "--test_file", str(tmp_path / "test.json"),
        "--image_root", str(tmp_path), "--image_size", "32", "--max_steps", "1", "--report_to", "none",
        "--save_strategy", "no", "--output_dir", str(tmp_path / "out"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1].startswith("No test question has answers to score (predictions in")
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["scored_questions"] == 0
    assert len(json.loads((tmp_path / "out" / "predictions.json").read_text())) == 2
