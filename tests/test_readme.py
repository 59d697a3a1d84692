"""README.md's Python code runs as written: every ```python block, in order, in one session (later blocks use what
earlier ones defined, as a reader would), in a folder holding what the README says to make first: `mamo-demo` (as
`make demo` saves it), `vqa-demo` (as `examples/finetune_vqa.py` saves it) and the scene images. The models are tiny
and untrained: this checks that the code runs, not what it finds."""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from mamo_hf import MamoForPreTraining, MamoForQuestionAnswering
from mamo_hf.data import tiny_config_and_processor
from mamo_hf.data.demo import demo_scene, draw_scene

README = Path(__file__).parents[1] / "README.md"
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)

RUN_BLOCKS = textwrap.dedent(
    """
    import json, sys, traceback
    namespace = {"__name__": "__main__"}
    for line, code in json.load(open(sys.argv[1])):
        try:
            exec(compile(code, f"README.md, block at line {line}", "exec"), namespace)
        except Exception:
            traceback.print_exc()
            raise SystemExit(f"README.md: the block at line {line} failed")
        print(f"ran the block at line {line}", flush=True)
    """
)


def python_blocks(text: str) -> list[tuple[int, str]]:
    """The ```python blocks of a Markdown text with the line each starts on."""
    return [(text.count("\n", 0, match.start()) + 1, match.group(1)) for match in PYTHON_BLOCK.finditer(text)]


def make_demo_folders(folder: Path) -> None:
    """What the README assumes exists: the demo model and processor, a fine-tuned VQA model, two scene images."""
    config, processor = tiny_config_and_processor(64, patch_size=16)
    torch.manual_seed(0)
    MamoForPreTraining(config).save_pretrained(folder / "mamo-demo")
    processor.save_pretrained(folder / "mamo-demo")
    answers = ["red", "blue", "green", "circle", "square"]
    config.id2label, config.label2id = dict(enumerate(answers)), {answer: i for i, answer in enumerate(answers)}
    MamoForQuestionAnswering(config).save_pretrained(folder / "vqa-demo")
    processor.save_pretrained(folder / "vqa-demo")
    for index in range(2):
        draw_scene(demo_scene(seed=0, index=index), image_size=96).save(folder / f"scene{index}.png")


def test_the_readme_has_python_blocks_and_finds_them_all():
    blocks = python_blocks(README.read_text())
    assert len(blocks) >= 6
    assert len(blocks) == README.read_text().count("```python")


def test_every_python_block_of_the_readme_runs_as_written(tmp_path):
    make_demo_folders(tmp_path)
    blocks = python_blocks(README.read_text())
    (tmp_path / "blocks.json").write_text(json.dumps(blocks))
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", RUN_BLOCKS, str(tmp_path / "blocks.json")],
        cwd=tmp_path,
        env=environment,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert result.stdout.count("ran the block at line") == len(blocks)
