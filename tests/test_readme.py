"""README.md's code runs as written. The quick start's shell block runs first, as a user runs it after `make demo`
(which the test replaces by a 2-step `mamo-hf demo`, the same command and folder with fewer steps), in a folder that
holds the repository's `examples/`; then every ```python block of the README, each on its own, in a new interpreter,
as a reader pastes one into a file and runs it. The models are tiny and barely trained: this checks that the code
runs and prints, not what it finds."""

import os
import re
import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).parents[1]
README = REPOSITORY / "README.md"
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
SHELL_BLOCK = re.compile(r"^```bash\n(.*?)^```", re.DOTALL | re.MULTILINE)
MAKE_DEMO = "make demo && source .venv-demo/bin/activate"
SHORT_DEMO = "mamo-hf demo --max-steps 2 --demo-pairs 64 --eval-pairs 8 --num-workers 0 --report-to csv"


def python_blocks(text: str) -> list[tuple[int, str]]:
    """The ```python blocks of a Markdown text with the line each starts on."""
    return [(text.count("\n", 0, match.start()) + 1, match.group(1)) for match in PYTHON_BLOCK.finditer(text)]


def quick_start_commands(text: str) -> list[str]:
    """The commands of the quick start's shell block, comments removed, `make demo` first."""
    section = text[text.index("## Quick start") :]
    lines = SHELL_BLOCK.search(section).group(1).splitlines()
    commands = [line.split("  #")[0].strip() for line in lines if line.strip()]
    assert commands[0] == MAKE_DEMO, "the quick start no longer begins with `make demo`: update this test"
    return commands


def test_the_readme_has_python_blocks_and_finds_them_all():
    blocks = python_blocks(README.read_text())
    assert len(blocks) >= 6
    assert len(blocks) == README.read_text().count("```python")


def test_the_quick_start_runs_as_written_after_make_demo(tmp_path):
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment['PATH']}"  # mamo-hf, python
    (tmp_path / "examples").symlink_to(REPOSITORY / "examples")
    for command in [SHORT_DEMO, *quick_start_commands(README.read_text())[1:]]:
        ran = subprocess.run(
            command, shell=True, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=900
        )
        assert ran.returncode == 0, f"{command}\n{ran.stdout[-2000:]}{ran.stderr[-3000:]}"
    for line, code in python_blocks(README.read_text()):
        (tmp_path / "block.py").write_text(code)
        ran = subprocess.run(
            [sys.executable, "block.py"],
            cwd=tmp_path,
            env=environment,
            stdin=subprocess.DEVNULL,  # a block that would stop at transformers' remote-code prompt fails
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert ran.returncode == 0, f"README.md, the block at line {line}:\n{ran.stdout[-2000:]}{ran.stderr[-4000:]}"
        assert ran.stdout.strip(), f"README.md, the block at line {line} prints nothing"


# What a measured number looks like: a mean ± std, a p-value, a ratio of costs, a decimal percentage, a time or a
# difference in points. Chance levels, the paper's settings and counts of things are not measurements.
MEASURED = re.compile(
    r"±|\bp = 0\.|\b\d+\.\d+ ?×|\b\d+\.\d+ ?%|\b\d+(\.\d+)? ?(µs|ms|s|seconds|minutes|hours)\b|\b\d+(\.\d+)? points"
)
CODE_OR_PASSAGE = re.compile(r"^```.*?^```|<!-- numbers: [\w-]+ -->.*?<!-- /numbers -->", re.DOTALL | re.MULTILINE)


def stray_measurements(text: str) -> list[str]:
    """The lines of a Markdown text, outside code blocks and generated passages, that state a measured number (a
    decimal percentage right after the word "chance" is a chance level, not a measurement)."""
    prose = CODE_OR_PASSAGE.sub("", text)
    return [
        line
        for line in prose.splitlines()
        if MEASURED.search(re.sub(r"chance( is| of)? \d+(\.\d+)? ?%", "chance", line))
    ]


def test_the_readme_and_model_card_state_measured_numbers_only_in_generated_passages():
    for name in ("README.md", "MODEL_CARD.md"):
        assert stray_measurements((REPOSITORY / name).read_text()) == [], (
            f"{name}: a measured number outside a passage of benchmarks/readme_numbers.py, which would go stale"
        )


def test_the_stray_number_check_finds_a_number_written_by_hand():
    assert stray_measurements("ITC reaches 77.1 % after 6,000 steps.\n") == ["ITC reaches 77.1 % after 6,000 steps."]
    assert stray_measurements("Δ −5.0 (p = 0.16)\n") != []
    assert stray_measurements("chance 16.7 %, 75% of patches, 6 seeds\n") == []
    assert stray_measurements("<!-- numbers: x -->\n77.1 ± 8.0\n<!-- /numbers -->\n") == []
