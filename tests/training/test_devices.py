"""Devices and precision (`mamo_hf.training.devices`): bf16 without native support is refused unless allowed (native
support read from the CPU flags), fp16 on a CPU is refused, and a run says its device, process count and precision."""

import pytest
import torch
from accelerate.state import AcceleratorState
from helpers import one_line_error, reset_accelerate, run_main, tiny_run

from mamo_hf.training import InvalidArgumentError, devices, pretrain

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


def test_bf16_without_native_support_is_refused_unless_allowed_with_a_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(devices, "has_native_bf16", lambda device: False)
    with pytest.raises(InvalidArgumentError, match="no native bf16 .* ~25× slower than fp32"):
        pretrain(tiny_run(tmp_path, mixed_precision="bf16", cpu=True))
    reset_accelerate()
    with caplog.at_level("WARNING"):
        summary = pretrain(tiny_run(tmp_path, mixed_precision="bf16", cpu=True, max_steps=1, allow_slow_bf16=True))
    assert summary.summary["steps"] == 1 and "running anyway" in caplog.text
    reset_accelerate()
    monkeypatch.setattr(devices, "has_native_bf16", lambda device: True)
    caplog.clear()
    pretrain(tiny_run(tmp_path, "native", mixed_precision="bf16", cpu=True, max_steps=1))
    assert "no native bf16" not in caplog.text


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path, monkeypatch):
    cpuinfo = {"with": "flags\t\t: fpu sse avx2 avx512f avx512_bf16\n", "without": "flags\t\t: fpu sse avx2\n"}
    for kind, text in cpuinfo.items():
        (tmp_path / kind).write_text("processor\t: 0\n" + text)
        monkeypatch.setattr(devices, "CPUINFO", tmp_path / kind)
        assert devices.has_native_bf16(torch.device("cpu")) is (kind == "with")
    monkeypatch.setattr(devices, "CPUINFO", tmp_path / "absent")
    assert devices.has_native_bf16(torch.device("cpu")) is None  # unknown: neither refused nor warned


def test_fp16_on_a_cpu_is_refused_and_the_run_says_its_device_and_precision(tmp_path, capsys):
    code, stderr = run_main(capsys, "pretrain", "--output-dir", str(tmp_path / "run"), "--mixed-precision", "fp16")
    assert code == 1
    one_line_error(None, stderr, "--mixed-precision fp16 needs a GPU")
    AcceleratorState._reset_state(reset_partial_state=True)
    pretrain(tiny_run(tmp_path, "cpu-run", max_steps=1))
    assert "Training on cpu × 1 process(es), precision fp32." in capsys.readouterr().out
