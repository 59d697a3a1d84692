"""`mamo-hf demo`, `pretrain` and `demo-data` (`mamo_hf.cli.pretraining`): YAML `--config` files under the flags, one
line and a non-zero exit for every error, Ctrl-C that says how to go on, the demo's improvement, and demo-data's
output folder and ranges."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import logged, one_line_error, run_main
from PIL import Image

from mamo_hf.training import list_checkpoints
from mamo_hf_cli import main

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


def test_yaml_config_and_flags(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(
        "max_steps: 1\nbatch_size: 4\nimage_size: 32\nnum_workers: 0\neval_pairs: 0\n"
        "report_to: [csv]\ndemo_pairs: 64\nlog_every: 1\nmodel_config: {mim_weight: 0.0}\n"
    )
    main(
        [
            "pretrain",
            "--config",
            str(config),
            "--output-dir",
            str(tmp_path / "yaml"),
            "--max-steps",
            "2",
            "--model-config",
            "mrm_weight=0.5",
        ]
    )
    saved = json.loads((tmp_path / "yaml" / "config.json").read_text())
    assert (saved["mim_weight"], saved["mrm_weight"]) == (0.0, 0.5)
    assert set(logged(tmp_path / "yaml")) == {1, 2}  # the flag overrides the file's max_steps
    config.write_text("max_stepz: 3\n")
    with pytest.raises(SystemExit, match="max_stepz"):
        main(["pretrain", "--config", str(config)])


def test_demo_improves_zero_shot_retrieval(tmp_path, capsys):
    main(
        [
            "demo",
            "--output-dir",
            str(tmp_path / "demo"),
            "--max-steps",
            "250",
            "--demo-pairs",
            "4000",
            "--eval-pairs",
            "100",
            "--demo-max-objects",
            "1",
            "--image-size",
            "32",
            "--num-workers",
            "0",
            "--checkpoint-every",
            "0",
            "--report-to",
            "csv",
        ]
    )
    summary = json.loads((tmp_path / "demo" / "pretraining_summary.json").read_text())
    before, after = summary["retrieval_before"]["itc"], summary["retrieval_after"]["itc"]
    # 250 steps, single-object scenes, 100 held-out pairs (chance: R@1 1 %, R@5 5 %).
    assert after["txt_r5"] > before["txt_r5"] + 20 and after["img_r5"] > before["img_r5"] + 20
    assert after["txt_r1"] > before["txt_r1"] and after["img_r1"] > before["img_r1"]
    printed = capsys.readouterr().out
    assert "zero-shot R@1" in printed and "AutoModel.from_pretrained" in printed


def test_demo_data_writes_a_caption_dataset(tmp_path, capsys):
    main(["demo-data", "--output", str(tmp_path / "demo"), "--num-pairs", "5", "--image-size", "32"])
    records = json.loads((tmp_path / "demo" / "captions.json").read_text())
    assert len(records) == 5 and all((tmp_path / "demo" / record["image"]).is_file() for record in records)
    assert Image.open(tmp_path / "demo" / records[0]["image"]).size == (32, 32)
    assert "Wrote 5 pairs" in capsys.readouterr().out


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


def test_a_diverging_learning_rate_makes_the_cli_exit_non_zero_with_a_message(tmp_path, capsys):
    flags = ["--image-size", "32", "--demo-pairs", "64", "--demo-max-objects", "1", "--eval-pairs", "0"]
    flags += ["--batch-size", "8", "--max-steps", "12", "--learning-rate", "50", "--warmup-steps", "0"]
    flags += ["--num-workers", "0", "--report-to", "csv", "--output-dir", str(tmp_path / "run")]
    assert main(["pretrain", *flags]) == 1
    error = capsys.readouterr().err
    assert "Training diverged" in error and "non-finite" in error and "Traceback" not in error


def test_the_cli_reports_a_bad_argument_in_one_line(tmp_path, capsys):
    assert main(["pretrain", "--batch-size", "0", "--output-dir", str(tmp_path / "run")]) == 1
    error = capsys.readouterr().err.strip()
    assert error == "mamo-hf pretrain: error: --batch-size must be an integer from 1 to 65536, got 0."


def test_yaml_numbers_written_without_a_dot_are_numbers(tmp_path):
    """Issue 29: YAML 1.1 reads `1e-4` as a string; users write it so, and the run takes it as the number."""
    from mamo_hf.cli.pretraining import yaml_settings

    config = tmp_path / "run.yaml"
    config.write_text("learning_rate: 1e-4\nmin_learning_rate: 1E-5\nmodel: tiny\n")
    settings = yaml_settings(["pretrain", "--config", str(config)])
    assert settings == {"learning_rate": 1e-4, "min_learning_rate": 1e-5, "model": "tiny"}
    config.write_text("batch_size: 1e2\n")  # not an integer: still refused, naming the field
    with pytest.raises(SystemExit, match="batch_size must be int, got '1e2'"):
        yaml_settings(["pretrain", "--config", str(config)])


def interrupted_once(tmp_path, ready) -> tuple[int, str]:
    """`mamo-hf pretrain` with two DataLoader workers, sent one SIGINT (to the main process alone) as soon as
    `ready(run folder, pid)` holds; its exit status and standard error."""
    import signal
    import time

    run = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "mamo_hf_cli", "pretrain", "--output-dir", str(run), "--image-size", "32",
         "--batch-size", "4", "--max-steps", "100000", "--eval-pairs", "0", "--num-workers", "2",
         "--report-to", "csv"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "TQDM_DISABLE": "1"},
    )  # fmt: skip
    deadline = time.monotonic() + 180
    while not ready(run, process.pid):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.002)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    return process.returncode, stderr


def children(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads a process's children from Linux's /proc")
@pytest.mark.parametrize("moment", ["loading", "workers starting"])
def test_one_ctrl_c_to_the_main_process_ends_the_run_whatever_it_is_doing(tmp_path, moment):
    """Issue 29: a SIGINT while the DataLoader workers are forked raises its KeyboardInterrupt in a fork handler,
    where Python prints and drops it: the run went on and ended with status 0. A SIGINT while the package loads
    printed a traceback. Both end with one line and status 130."""
    import time

    started = time.monotonic()
    if moment == "loading":  # after Python's start (~0.1 s), while torch and transformers load (seconds)
        ready = lambda run, pid: time.monotonic() - started > 1.0  # noqa: E731
    else:
        ready = lambda run, pid: (run / "logs").exists() and bool(children(pid))  # noqa: E731
    code, stderr = interrupted_once(tmp_path, ready)
    assert code == 130, stderr[-2000:]
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr[-2000:]
    assert [line for line in stderr.splitlines() if line.strip()][-1].startswith("mamo-hf pretrain: interrupted")
