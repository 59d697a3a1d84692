"""Two ranks (torchrun, gloo, CPU) against one process on the same global batch: equal losses and gradients."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent / "workers"))
from pretraining_step import OBJECTIVES, build_model, global_step_inputs  # noqa: E402

WORKER = Path(__file__).parent / "workers" / "pretraining_step.py"
# Float sums run in a different order on two ranks; differences stay at float32 rounding level.
ATOL, RTOL = 2e-6, 1e-4


def run_two_ranks(tmp_path, overrides):
    output = tmp_path / "ranks.pt"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--standalone",
        str(WORKER),
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
