"""Test configuration: offline Hub, and transformers' common suites on the path."""

import os
import sys

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # One thread per xdist worker: with as many workers as cores, more threads only make them spin against each
    # other (measured: the learning test took 7× longer with 2 workers × 2 threads on 2 cores).
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)

import transformers_suites  # noqa: E402

transformers_suites.install()

# Markers that transformers' common suites put on their tests.
TRANSFORMERS_MARKERS = (
    "accelerate_tests",
    "flash_attn_test",
    "flash_attn_3_test",
    "flash_attn_4_test",
    "torch_compile_test",
    "is_agent_test",
    "is_expert_parallel_test",
    "is_fsdp_test",
    "is_pipeline_test",
    "is_staging_test",
    "is_tensor_parallel_test",
    "is_training_test",
    "order",
)


def pytest_configure(config):
    for marker in TRANSFORMERS_MARKERS:
        config.addinivalue_line("markers", f"{marker}: used by transformers' common test suites")


@pytest.fixture(autouse=True)
def _seed_transformers_common_inputs():
    """Every test starts from the same state of the random source that transformers' common suites draw their
    inputs from (`global_rng`, a module-level `random.Random()` that `set_seed` does not reach). Otherwise a test's
    inputs depend on which tests ran before it on the same xdist worker, and a bf16 SDPA-vs-eager comparison at the
    edge of its tolerance passes or fails with the test order."""
    common = sys.modules.get("hf_common_tests.test_modeling_common")
    if common is not None:
        common.global_rng.seed(0)
    yield


@pytest.fixture
def fresh_accelerate_state():
    """For tests that build Accelerators: the process-wide Accelerate state must not leak from one to the next.
    Test files use it with `pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")`."""
    yield
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
