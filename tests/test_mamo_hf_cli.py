"""The entry script `mamo_hf_cli`: `mamo-hf --help` answers without importing torch or transformers, and its quick
parser and the package's full one list the same commands."""


def test_mamo_hf_help_answers_without_importing_torch_or_transformers():
    """`mamo-hf --help` is answered by the entry point outside the package: nothing heavy is imported."""
    import subprocess
    import sys

    script = (
        "import sys, mamo_hf_cli\n"
        "try:\n    mamo_hf_cli.main(['--help'])\nexcept SystemExit as exit_:\n    code = exit_.code\n"
        "print('IMPORTED', sorted(name for name in ('torch', 'transformers', 'mamo_hf') if name in sys.modules), code)"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert "IMPORTED [] 0" in result.stdout, result.stdout + result.stderr
    for command in ("demo", "pretrain", "demo-data", "push", "init-base", "index", "search", "app", "eval"):
        assert command in result.stdout


def test_the_quick_help_and_the_full_parser_list_the_same_commands_and_the_script_uses_the_quick_one():
    from importlib.metadata import entry_points

    from mamo_hf.cli import build_parser
    from mamo_hf_cli import COMMANDS, command_parsers

    full = next(action for action in build_parser(command_parsers)._actions if action.dest == "command")
    quick = next(action for action in command_parsers()[0]._actions if action.dest == "command")
    assert list(full.choices) == list(quick.choices) == list(COMMANDS)
    assert [choice.help for choice in full._choices_actions] == list(COMMANDS.values())
    (script,) = [point for point in entry_points(group="console_scripts") if point.name == "mamo-hf"]
    assert script.value == "mamo_hf_cli:main"


def test_sigterm_ends_a_run_like_ctrl_c_with_one_line_and_status_143(tmp_path):
    """Issue 29 (battery): SIGTERM (`kill`, a batch scheduler, `docker stop`) killed `mamo-hf pretrain` without a word
    (status -15), leaving its lock and a half-written checkpoint; now it ends the run as Ctrl-C does, with the line
    naming the checkpoint to resume from, and status 143 (128 + SIGTERM, as a shell reports it)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    run = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "mamo_hf_cli", "pretrain", "--output-dir", str(run), "--image-size", "32",
         "--batch-size", "4", "--max-steps", "100000", "--eval-pairs", "0", "--checkpoint-every", "2",
         "--num-workers", "0", "--report-to", "csv"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "TQDM_DISABLE": "1"},
    )  # fmt: skip
    deadline = time.monotonic() + 180
    while not list(run.glob("checkpoint-*/training_state.json")):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr[-2000:]
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr[-2000:]
    last = [line for line in stderr.splitlines() if line.strip()][-1]
    assert last.startswith("mamo-hf pretrain: interrupted; continue from checkpoint-") and "--resume latest" in last
    assert not (run / ".mamo_run.lock").exists()
