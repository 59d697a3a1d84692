"""`benchmarks/gpu_check.py`'s logic, checked without a GPU: the JUnit counts, the step summary's ratios, one
section's failure kept from losing the others, and the refusal to run on a CPU unless asked."""

import json
import sys

import pytest
from helpers import BENCHMARKS

sys.path.insert(0, str(BENCHMARKS))
import gpu_check  # noqa: E402


def test_the_junit_counts_are_summed_over_the_suites(tmp_path):
    report = tmp_path / "report.xml"
    report.write_text(
        '<testsuites><testsuite tests="4" failures="1" errors="0" skipped="1"/>'
        '<testsuite tests="2" failures="0" errors="1" skipped="0"/></testsuites>'
    )
    assert gpu_check.test_counts(report) == {"tests": 6, "failures": 1, "errors": 1, "skipped": 1}


def test_the_step_summary_gives_the_full_over_ablation_and_the_flava_ratios():
    def entry(seconds, gflop):
        return {"seconds_per_step": seconds, "examples_per_second": 8 / seconds, "fraction_of_matmul": 0.25,
                "gflop_per_second": gflop / seconds}  # fmt: skip

    peer_step = {
        "matmul": {"gflop_per_second": 100.0},
        "pretraining_step": {"mamo": entry(1.2, 60), "mamo-itc-itm-mlm": entry(1.0, 40), "flava": entry(1.5, 50)},
    }
    summary = gpu_check.step_summary(peer_step)
    assert summary["full_over_ablation_step_time"] == 1.2
    assert summary["mamo_over_flava_flop_per_second"] == round((60 / 1.2) / (50 / 1.5), 3)
    assert summary["models"]["mamo"]["pairs_per_second"] == round(8 / 1.2, 2)


def test_a_failing_section_is_reported_and_the_others_still_run(tmp_path, monkeypatch):
    def broken(*args):
        raise RuntimeError("CUDA error: out of memory\nmore detail")

    monkeypatch.setattr(gpu_check, "cuda_tests", broken)
    monkeypatch.setattr(gpu_check, "pretraining_step", lambda *args: {"status": "ok", "full_over_ablation": 1.1})
    monkeypatch.setattr(gpu_check, "sdpa_dropout", lambda *args: {"status": "ok"})
    output = tmp_path / "gpu_check.json"
    assert gpu_check.main(["--allow-cpu", "--output", str(output)]) == 1
    results = json.loads(output.read_text())
    assert results["cuda_tests"]["status"] == "failed"
    assert results["cuda_tests"]["reason"] == "RuntimeError: CUDA error: out of memory"
    assert results["pretraining_step"]["status"] == results["sdpa_dropout"]["status"] == "ok"


def test_without_a_gpu_it_refuses_unless_asked(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gpu_check.torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--output", str(tmp_path / "out.json")]) == 2
    assert "no CUDA GPU here" in capsys.readouterr().out and not (tmp_path / "out.json").exists()


@pytest.mark.slow
def test_the_whole_plan_runs_on_the_cpu_when_asked(tmp_path):
    output = tmp_path / "gpu_check.json"
    assert gpu_check.main(["--allow-cpu", "--quick", "--output", str(output)]) in (0, 1)
    results = json.loads(output.read_text())
    assert results["pretraining_step"]["status"] == "ok"
    assert results["pretraining_step"]["full_over_ablation_step_time"] > 0
    assert results["cuda_tests"]["status"] == "unavailable"  # every CUDA test skips itself here
