"""The GPU check: what this project can only measure on a GPU, in one run of a few minutes, written to one JSON file.

    bash benchmarks/gpu_check.sh                      # on a machine with a CUDA GPU: < 8 minutes
    python benchmarks/gpu_check.py --allow-cpu --quick --output /tmp/gpu_check.json   # the same plan, tiny, on CPU

Sections, each with its `status` (`ok`, `failed`, or `unavailable` with the reason) and its own time limit, so that
one failure does not lose the others:

1. `environment`: torch, transformers, the device, its compute capability and bf16 support.
2. `cuda_tests`: `pytest -m cuda` (tests/test_cuda.py): CPU/GPU equality, bf16 training, SDPA's fused kernels
   against the math kernel, the flash kernel with attention dropout, a short `pretrain` on the GPU.
3. `pretraining_step`: `benchmarks/peer_step.py` at `mamo-base` size in bf16 (`--quick`: tiny, fp32): pairs per
   second and the fraction of the bf16 matmul rate for MAMO's full step, its ITC+ITM+MLM ablation and FLAVA, the
   full/ablation step-time ratio and MAMO's achieved FLOP/s over FLAVA's.
4. `sdpa_dropout`: a `small` MAMO training step with attention dropout 0.1 in bf16, under SDPA's flash kernel alone
   and under the math kernel alone: whether the flash kernel runs it, and the speed-up.

Exit status 0 when every section is `ok`, 1 otherwise; 2 when there is no GPU and `--allow-cpu` is not given.
"""

import argparse
import contextlib
import json
import platform
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
PEER_STEP = ROOT / "benchmarks" / "peer_step.py"
DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "gpu_check.json"
# Seconds each section may take: together under the 8 minutes the check is sized for.
LIMITS = {"cuda_tests": 150, "pretraining_step": 240, "sdpa_dropout": 60}


def environment(device: str) -> dict:
    import transformers

    facts = {"status": "ok", "torch": torch.__version__, "transformers": transformers.__version__, "device": device}
    if device == "cuda":
        facts.update(
            name=torch.cuda.get_device_name(),
            capability=".".join(map(str, torch.cuda.get_device_capability())),
            bf16_supported=torch.cuda.is_bf16_supported(),
            memory_gib=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1),
        )
    else:
        facts["name"] = platform.processor() or platform.machine()
    return facts


def run_limited(command: list[str], limit: float) -> tuple[subprocess.CompletedProcess | None, str | None]:
    """Run `command`; the result, or None and why (it ran past `limit` seconds)."""
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=limit, cwd=ROOT), None
    except subprocess.TimeoutExpired:
        return None, f"ran past its {limit:.0f} s limit"


def cuda_tests(scratch: Path, device: str) -> dict:
    report = scratch / "cuda_tests.xml"
    command = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "tests/test_cuda.py", f"--junitxml={report}"]
    result, problem = run_limited(command, LIMITS["cuda_tests"])
    if result is None or not report.exists():
        return {"status": "failed", "reason": problem or _last_line(result)}
    counts = test_counts(report)
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    status = "ok" if result.returncode == 0 and passed > 0 else "failed"
    if device == "cpu" and result.returncode == 0 and counts["skipped"] == counts["tests"]:
        status = "unavailable"  # without a GPU every test skips itself
    return {"status": status, **counts, "passed": passed, "summary": _last_line(result)}


def test_counts(junit_xml: Path) -> dict[str, int]:
    """`tests`, `failures`, `errors` and `skipped` of a pytest JUnit report (summed over its test suites)."""
    root = ElementTree.parse(junit_xml).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    return {key: sum(int(suite.get(key, 0)) for suite in suites) for key in ("tests", "failures", "errors", "skipped")}


def pretraining_step(scratch: Path, quick: bool, device: str) -> dict:
    output = scratch / "peer_step.json"
    size, dtype = ("tiny", "fp32") if quick else ("base", "bf16")
    command = [
        sys.executable, str(PEER_STEP), "--size", size, "--dtype", dtype, "--device", device,
        "--models", "mamo", "mamo-itc-itm-mlm", "flava", "--skip-encoders",
        "--repeats", "1" if quick else "3", "--output", str(output),
    ]  # fmt: skip
    result, problem = run_limited(command, LIMITS["pretraining_step"])
    if result is None or result.returncode != 0 or not output.exists():
        return {"status": "failed", "reason": problem or _last_line(result)}
    return {"status": "ok", "size": size, "dtype": dtype, **step_summary(json.loads(output.read_text()))}


def step_summary(peer_step: dict) -> dict:
    """From `peer_step.py`'s JSON: per model the pairs per second and fraction of the matmul rate, the full/ablation
    step-time ratio and MAMO's achieved FLOP/s over FLAVA's."""
    steps = peer_step["pretraining_step"]
    models = {
        name: {
            "pairs_per_second": round(entry["examples_per_second"], 2),
            "fraction_of_matmul_rate": round(entry["fraction_of_matmul"], 4),
            "seconds_per_step": round(entry["seconds_per_step"], 5),
        }
        for name, entry in steps.items()
    }
    summary = {"matmul_gflop_per_second": round(peer_step["matmul"]["gflop_per_second"], 1), "models": models}
    if "mamo" in steps and "mamo-itc-itm-mlm" in steps:
        ratio = steps["mamo"]["seconds_per_step"] / steps["mamo-itc-itm-mlm"]["seconds_per_step"]
        summary["full_over_ablation_step_time"] = round(ratio, 3)
    if "mamo" in steps and "flava" in steps:
        ratio = steps["mamo"]["gflop_per_second"] / steps["flava"]["gflop_per_second"]
        summary["mamo_over_flava_flop_per_second"] = round(ratio, 3)
    return summary


def sdpa_dropout(device: str, quick: bool) -> dict:
    """Time a training step with attention dropout under the flash kernel alone and the math kernel alone."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    sys.path.insert(0, str(PEER_STEP.parent))
    from peer_step import SIZES, make_batch, mamo_config

    from mamo_hf import MamoForPreTraining

    size = SIZES["tiny" if quick else "small"]
    model = MamoForPreTraining(mamo_config(size, attention_dropout=0.1)).to(device).train()
    batch = {name: value.to(device) for name, value in make_batch(size).items()}

    def step() -> None:
        precision = torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else contextlib.nullcontext()
        with precision:
            loss = model(**batch, generator=torch.Generator(device).manual_seed(0)).loss
        loss.backward()
        model.zero_grad(set_to_none=True)

    timings, started = {}, time.perf_counter()
    for name, backend in (("flash", SDPBackend.FLASH_ATTENTION), ("math", SDPBackend.MATH)):
        try:
            with sdpa_kernel(backend):
                timings[name] = median_seconds(step, device, repeats=2 if quick else 5)
        except RuntimeError as error:
            if name == "flash":
                return {"status": "unavailable", "reason": f"the flash kernel refused the step: {_first(error)}"}
            raise
        if time.perf_counter() - started > LIMITS["sdpa_dropout"]:
            return {"status": "failed", "reason": f"ran past its {LIMITS['sdpa_dropout']} s limit"}
    return {
        "status": "ok",
        "seconds_per_step": {name: round(value, 5) for name, value in timings.items()},
        "flash_speedup_over_math": round(timings["math"] / timings["flash"], 3),
    }


def median_seconds(step, device: str, repeats: int) -> float:
    step()  # warm-up
    seconds = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def _first(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _last_line(result: subprocess.CompletedProcess | None) -> str:
    if result is None:
        return ""
    lines = (result.stdout + result.stderr).strip().splitlines()
    return lines[-1] if lines else f"exit status {result.returncode}"


def guarded(section, *args) -> dict:
    """A section's result; an exception in it becomes its `failed` status (the others still run)."""
    started = time.perf_counter()
    try:
        result = section(*args)
    except Exception as error:  # one section's failure must not lose the others' results
        result = {"status": "failed", "reason": f"{type(error).__name__}: {_first(error)}"}
    return {**result, "seconds": round(time.perf_counter() - started, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--allow-cpu", action="store_true", help="run the plan on the CPU (to check the script)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and fewer repeats (to check the script)")
    args = parser.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not args.allow_cpu:
        print("gpu_check: error: no CUDA GPU here; run it on a GPU machine (or pass --allow-cpu to check the script).")
        return 2
    scratch = args.output.parent / (args.output.stem + "_files")
    scratch.mkdir(parents=True, exist_ok=True)
    results = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "environment": environment(device)}
    results["cuda_tests"] = guarded(cuda_tests, scratch, device)
    results["pretraining_step"] = guarded(pretraining_step, scratch, args.quick, device)
    results["sdpa_dropout"] = guarded(sdpa_dropout, device, args.quick)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    statuses = {name: section["status"] for name, section in results.items() if isinstance(section, dict)}
    print(json.dumps(statuses), f"\nwrote {args.output}")
    return 0 if all(status == "ok" for status in statuses.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
