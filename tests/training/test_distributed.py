"""Two ranks (torchrun, gloo, CPU) against one process on the same global batches: equal losses and gradients of one
step; `pretrain` on two processes in sync with one (evaluation included, a staged schedule too) and resuming exactly
from every checkpoint across an epoch boundary; FSDP2 (`fully_shard`, each `MamoVisionLayer` and `MamoTextLayer` a
shard unit) with the same losses, student, EMA teacher and ITC queue as one unsharded process, and a sharded
checkpoint (`torch.distributed.checkpoint`) that resumes exactly.

Accelerate does not run FSDP on CPUs (its CPU path has no FSDP), so the FSDP tests drive `fully_shard` directly, with
the model, collator, losses and teacher update the training loop uses (`workers/fsdp_pretraining.py`)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import WORKERS, assert_same_weights, final_weights, logged, resume_copy, run_two_processes, tiny_run
from safetensors.torch import load_file
from workers.pretraining_step import OBJECTIVES, build_model, global_step_inputs

from mamo_hf.training import pretrain

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")

STEP_WORKER = WORKERS / "pretraining_step.py"

# Float sums run in a different order on two ranks; differences stay at float32 rounding level.
ATOL, RTOL = 2e-6, 1e-4

FSDP_WORKER = WORKERS / "fsdp_pretraining.py"

STEPS = 4


# --------------------------------------------------------------------------------------------------------------------
# One step of two DDP ranks against one process on the global batch (workers/pretraining_step.py)
# --------------------------------------------------------------------------------------------------------------------


def run_two_ranks(tmp_path, overrides):
    output = tmp_path / "ranks.pt"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--standalone",
        str(STEP_WORKER),
        str(output),
        json.dumps(overrides),
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=environment)
    assert result.returncode == 0, result.stderr[-4000:]
    return torch.load(output)


def run_one_process(overrides):
    model = build_model(**overrides)
    outputs = model(**global_step_inputs(model), generator=torch.Generator().manual_seed(123))
    outputs.loss.backward()
    losses = torch.stack([getattr(outputs, name).detach() for name in OBJECTIVES])
    gradients = {name: parameter.grad for name, parameter in model.mamo.named_parameters()}
    gradients.update(
        {
            name: parameter.grad
            for name, parameter in model.named_parameters()
            if not name.startswith(("mamo.", "teacher."))
        }
    )
    return {"losses": losses, "gradients": gradients, "queue": getattr(model, "image_queue", None)}


@pytest.mark.parametrize(
    "overrides",
    [{}, {"queue_size": 16, "distill_alpha": 0.4, "mrm_target_layers": 2}],
    ids=["default", "queue-distillation-top2"],
)
def test_two_ranks_equal_one_process_on_the_global_batch(tmp_path, overrides):
    ranks = run_two_ranks(tmp_path, overrides)
    single = run_one_process(overrides)
    torch.testing.assert_close(ranks["losses"], single["losses"], atol=ATOL, rtol=RTOL)
    assert single["gradients"].keys() == ranks["gradients"].keys()
    for name, gradient in single["gradients"].items():
        assert gradient is not None, name
        torch.testing.assert_close(ranks["gradients"][name], gradient, atol=ATOL, rtol=RTOL, msg=name)
    if overrides.get("queue_size"):
        torch.testing.assert_close(ranks["queue"], single["queue"], atol=ATOL, rtol=RTOL)


# --------------------------------------------------------------------------------------------------------------------
# FSDP2 against one unsharded process (workers/fsdp_pretraining.py)
# --------------------------------------------------------------------------------------------------------------------


def run(output_dir: Path, *options: str, ranks: int = 2) -> dict[str, torch.Tensor]:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks), "--standalone"]
    command = [*(launcher if ranks > 1 else [sys.executable]), str(FSDP_WORKER), str(output_dir), str(STEPS), *options]
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


# --------------------------------------------------------------------------------------------------------------------
# `pretrain` on two processes against one (workers/pretrain_two_ranks.py)
# --------------------------------------------------------------------------------------------------------------------


def test_two_processes_with_a_staged_schedule_match_one_process(tmp_path):
    """Before the start MIM's and MRM's heads get no gradient: DDP is told so, and the ranks stay in sync."""
    settings = {"model_config": {"masked_modeling_start_step": 2}}
    result = run_two_processes(tmp_path / "two", **settings)
    assert result.returncode == 0, result.stderr[-4000:]
    pretrain(tiny_run(tmp_path, "one", batch_size=8, max_steps=3, **settings))
    two, one = logged(tmp_path / "two"), logged(tmp_path / "one")
    for step in one:
        assert two[step] == pytest.approx(one[step], rel=1e-4), step
    assert sorted(logged(tmp_path / "two", "train/loss_mim")) == [3]
    rank_states = [load_file(tmp_path / "two" / f"rank{rank}.safetensors")["state"] for rank in (0, 1)]
    assert torch.equal(rank_states[0], rank_states[1])


def test_two_processes_stay_in_sync_match_one_process_and_evaluate_together(tmp_path):
    settings = {"model_config": {"queue_size": 16}, "eval_pairs": 12, "eval_k": 4}
    result = run_two_processes(tmp_path / "two", **settings)
    assert result.returncode == 0, result.stderr[-4000:]
    rank_states = [load_file(tmp_path / "two" / f"rank{rank}.safetensors")["state"] for rank in (0, 1)]
    assert torch.equal(rank_states[0], rank_states[1]), "the ranks ended with different student/teacher/queue"

    pretrain(tiny_run(tmp_path, "one", batch_size=8, max_steps=3, **settings))
    two, one = logged(tmp_path / "two"), logged(tmp_path / "one")
    assert sorted(two) == sorted(one) == [1, 2, 3]
    for step in one:
        assert two[step] == pytest.approx(one[step], rel=1e-4), step
    assert_same_weights(final_weights(tmp_path / "two"), final_weights(tmp_path / "one"), atol=2e-5, rtol=1e-3)
    # The zero-shot evaluation ran on both ranks (sharded, then gathered): the same figures as one process.
    summaries = [json.loads((tmp_path / run / "pretraining_summary.json").read_text()) for run in ("two", "one")]
    for moment in ("retrieval_before", "retrieval_after"):
        assert summaries[0][moment] == summaries[1][moment], moment


def test_two_processes_resume_exactly_from_every_checkpoint_across_an_epoch_boundary(tmp_path):
    settings = {
        "demo_pairs": 32,
        "batch_size": 4,
        "max_steps": 8,
        "checkpoint_every": 3,
        "save_total_limit": 0,
        "model_config": {"queue_size": 8},
    }
    result = run_two_processes(tmp_path / "uninterrupted", **settings)
    assert result.returncode == 0, result.stderr[-4000:]
    expected = logged(tmp_path / "uninterrupted")
    for step in (3, 6):  # epoch 1 ends at step 4 (32 pairs, 2 processes × 4 per step)
        folder = resume_copy(tmp_path, tmp_path / "uninterrupted", f"checkpoint-{step}", f"from-{step}")
        (folder / "logs" / "mamo" / "metrics.csv").unlink()
        result = run_two_processes(folder, resume="latest", **settings)
        assert result.returncode == 0, result.stderr[-4000:]
        resumed = logged(folder)
        assert sorted(resumed) == list(range(step + 1, 9))
        for later in resumed:
            assert resumed[later] == pytest.approx(expected[later], rel=1e-6, abs=1e-7), (step, later)
        assert_same_weights(final_weights(folder), final_weights(tmp_path / "uninterrupted"), atol=1e-6, rtol=1e-5)
