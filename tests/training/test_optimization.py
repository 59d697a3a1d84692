"""Optimization (`mamo_hf.training.optimization`): `DivergenceGuard` warns of loss spikes and skips only non-finite
steps, and a resume with allowed changes takes the new learning rate and schedule."""

import pytest
from accelerate.state import AcceleratorState
from helpers import logged, tiny_run

from mamo_hf.training import TrainingDivergedError, pretrain
from mamo_hf.training.optimization import DivergenceGuard

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


def test_the_guard_warns_of_loss_spikes_and_skips_only_non_finite_steps():
    guard = DivergenceGuard(max_consecutive=2, spike_factor=10.0)
    assert guard.check(1, {"loss": 4.0}, 1.0) and guard.check(2, {"loss": 3.0}, 1.0)
    assert guard.check(3, {"loss": 50.0}, 1.0) and guard.spikes == [3]  # applied, but reported
    assert guard.check(4, {"loss": 3.0}, 1.0) and guard.spikes == [3]
    assert not guard.check(5, {"loss": 3.0, "loss_itm": float("nan")}, 1.0)
    assert guard.check(6, {"loss": 3.0}, 1.0)  # a good step resets the count
    assert not guard.check(7, {"loss": 3.0}, float("inf"))
    with pytest.raises(TrainingDivergedError, match="2 steps in a row up to step 8 had a non-finite loss, grad_norm"):
        guard.check(8, {"loss": float("inf")}, float("nan"))


def test_resume_with_allowed_changes_uses_the_new_learning_rate(tmp_path):
    pretrain(tiny_run(tmp_path, checkpoint_every=3, max_steps=3, warmup_steps=0))
    AcceleratorState._reset_state(reset_partial_state=True)
    arguments = {"checkpoint_every": 3, "max_steps": 4, "warmup_steps": 0, "resume": "latest"}
    pretrain(tiny_run(tmp_path, learning_rate=1e-4, min_learning_rate=1e-5, allow_changed_arguments=True, **arguments))
    # Step 4 ends a 4-step cosine from the new peak 1e-4 at its floor 1e-5; from the old peak of 1e-3 it would end
    # at 1e-4 (the floor is a tenth of the peak).
    assert logged(tmp_path / "run", "train/learning_rate")[4] == pytest.approx(1e-5)
