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
