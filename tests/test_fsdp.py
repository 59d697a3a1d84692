"""FSDP2 (`fully_shard`, each `MamoVisionLayer` and `MamoTextLayer` a shard unit) on two CPU ranks (torchrun, gloo)
against one unsharded process on the same global batches: the same losses, student, EMA teacher and ITC queue after
several steps, and a sharded checkpoint (`torch.distributed.checkpoint`) that resumes exactly.

Accelerate does not run FSDP on CPUs (its CPU path has no FSDP), so these tests drive `fully_shard` directly, with
the model, collator, losses and teacher update the training loop uses (`workers/fsdp_pretraining.py`)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

WORKER = Path(__file__).parent / "workers" / "fsdp_pretraining.py"
STEPS = 4


def run(output_dir: Path, *options: str, ranks: int = 2) -> dict[str, torch.Tensor]:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks), "--standalone"]
    command = [*(launcher if ranks > 1 else [sys.executable]), str(WORKER), str(output_dir), str(STEPS), *options]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=environment)
    assert result.returncode == 0, result.stderr[-4000:]
    return load_file(output_dir / "result.safetensors")


def assert_same_state(first: dict, second: dict, atol: float) -> None:
    """Equal student, teacher and queue, but for attention key biases (softmax ignores them: their gradient is float
    noise, which Adam turns into steps of up to the learning rate)."""
    assert first.keys() == second.keys()
    for name in first:
        tolerance = 1e-2 if name.endswith("attention.k_proj.bias") else atol
        torch.testing.assert_close(first[name], second[name], atol=tolerance, rtol=1e-3, msg=name)


@pytest.fixture(scope="module")
def sharded_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fsdp")
    return folder, run(folder / "two", "--save-at", "2")


def test_two_fsdp2_ranks_match_one_process_in_losses_student_teacher_and_queue(sharded_run, tmp_path):
    sharded, single = dict(sharded_run[1]), run(tmp_path / "one", ranks=1)
    torch.testing.assert_close(sharded.pop("losses"), single.pop("losses"), rtol=1e-5, atol=0)
    assert any(name.startswith("teacher.") for name in single) and "image_queue" in single
    assert_same_state(sharded, single, atol=2e-5)
    moved = single["teacher.image_projection.weight"] - single["mamo.image_projection.weight"]
    assert moved.abs().max() > 0  # the teacher is its own EMA, not a copy of the student


def test_a_sharded_checkpoint_resumes_exactly_like_the_uninterrupted_run(sharded_run):
    folder, uninterrupted = sharded_run
    resumed = run(folder / "resumed", "--resume-from", str(folder / "two" / "checkpoint"))
    torch.testing.assert_close(resumed.pop("losses"), uninterrupted["losses"][2:], rtol=1e-6, atol=0)
    assert_same_state(resumed, {name: value for name, value in uninterrupted.items() if name != "losses"}, atol=1e-6)
