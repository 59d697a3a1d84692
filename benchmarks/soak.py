"""Soak test of the pre-training job: a long tiny run with faults injected at random, checked against an
uninterrupted run of the same data.

Faults:
- bad records in the data (corrupt and missing images, records without a caption);
- NaN batches (a batch whose first pair's key falls in a fixed residue class gets NaN pixels: the same batches in
  every run, so the reference run meets them too);
- SIGKILL of the training process at a random moment of a step, or right after it starts writing a checkpoint;
  each kill is followed by `--resume latest` (or a fresh start when no checkpoint was complete yet), which also
  takes over the dead run's output-folder lock.

At the end it checks that every pair was trained exactly as in the reference (same steps, same final weights,
same skipped steps), that bad records were counted once each, that every kept checkpoint loads and is finite, and
that the metrics log holds every step once. The faulted run and the reference run side by side use the 2 cores.

    python benchmarks/soak.py run --minutes 30      # writes benchmarks/results/soak.json
"""

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "soak.json"
NAN_RESIDUE = 97  # a batch whose first sample key is 0 modulo this gets NaN pixels (about 1 batch in 97)


def write_data(folder: Path, pairs: int, seed: int) -> tuple[Path, int]:
    """Demo pairs as JSONL with bad records mixed in; returns the annotation file and the number of bad records."""
    from mamo_hf.data import write_demo_dataset

    annotation_file = write_demo_dataset(folder, pairs, seed=seed, image_size=32, max_objects=2, file_format="jsonl")
    records = [json.loads(line) for line in annotation_file.read_text().splitlines()]
    rng = random.Random(seed)
    bad = rng.sample(range(len(records)), k=max(3, pairs // 50))
    for number, index in enumerate(bad):
        kind = number % 3
        if kind == 0:
            (folder / records[index]["image"]).write_bytes(b"\x89PNG truncated")
        elif kind == 1:
            records[index]["image"] = f"images/missing-{index}.png"
        else:
            del records[index]["caption"]
    annotation_file.write_text("".join(json.dumps(record) + "\n" for record in records))
    return annotation_file, len(bad)


def run_arguments(output_dir: Path, annotation_file: Path, max_steps: int, resume: bool) -> dict:
    return {
        "output_dir": str(output_dir),
        "train_file": [str(annotation_file)],
        "image_size": 32,
        "batch_size": 16,
        "max_steps": max_steps,
        "learning_rate": 5e-4,
        "warmup_steps": 100,
        "num_workers": 1,
        "checkpoint_every": 50,
        "save_total_limit": 3,
        "log_every": 1,
        "eval_pairs": 0,
        "report_to": ["csv"],
        "seed": 7,
        "model_config": {"queue_size": 64},
        "resume": "latest" if resume else None,
    }


def worker(arguments: dict) -> None:
    """One training process: NaN batches injected, each checkpoint write announced on stdout (for the killer)."""
    import torch

    from mamo_hf.data import PretrainingCollator
    from mamo_hf.training import PretrainingArguments, checkpoints, pretrain

    torch.set_num_threads(1)
    real_call, real_save = PretrainingCollator.__call__, checkpoints.save_checkpoint

    def call(self, items):
        batch = real_call(self, items)
        if int(items[0]["sample_key"]) % NAN_RESIDUE == 0:
            batch["pixel_values"] = torch.full_like(batch["pixel_values"], float("nan"))
        return batch

    def save(accelerator, output_dir, state, *args):
        print(f"SAVING {state['step']}", flush=True)
        return real_save(accelerator, output_dir, state, *args)

    PretrainingCollator.__call__ = call
    checkpoints.save_checkpoint = save
    summary = pretrain(PretrainingArguments(**arguments)).summary
    print("SUMMARY " + json.dumps({key: summary[key] for key in ("steps", "skipped_records", "nonfinite_steps")}))


def launch(arguments: dict) -> subprocess.Popen:
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    command = [sys.executable, __file__, "worker", json.dumps(arguments)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)


def faulted_run(output_dir: Path, annotation_file: Path, max_steps: int, rng: random.Random) -> dict:
    """Train to the end, killing the process at random moments and resuming each time."""
    from mamo_hf.training import list_checkpoints

    kills = {"during_step": 0, "during_checkpoint_write": 0}
    attempts = 0
    while True:
        attempts += 1
        resume = bool(list_checkpoints(output_dir))
        process = launch(run_arguments(output_dir, annotation_file, max_steps, resume))
        stderr = []
        threading.Thread(target=lambda: stderr.extend(process.stderr), daemon=True).start()
        mode = rng.choice(["during_step", "during_checkpoint_write"])
        deadline = time.monotonic() + rng.uniform(10, 90)
        saves_to_wait = rng.randint(1, 6)
        summary, killed = None, False
        watcher = threading.Timer(max(0.0, deadline - time.monotonic()), process.kill)
        if mode == "during_step":
            watcher.start()
        for line in process.stdout:
            if line.startswith("SUMMARY "):
                summary = json.loads(line.removeprefix("SUMMARY "))
            if mode == "during_checkpoint_write" and line.startswith("SAVING"):
                saves_to_wait -= 1
                if saves_to_wait == 0:
                    time.sleep(rng.uniform(0.0, 0.05))
                    process.send_signal(signal.SIGKILL)
        watcher.cancel()
        returncode = process.wait()
        killed = returncode == -signal.SIGKILL
        if killed:
            kills[mode] += 1
            continue
        if returncode != 0:
            raise SystemExit(f"attempt {attempts} failed ({returncode}):\n{''.join(stderr)[-4000:]}")
        return {"summary": summary, "kills": kills, "attempts": attempts}


def reference_run(output_dir: Path, annotation_file: Path, max_steps: int) -> dict:
    process = launch(run_arguments(output_dir, annotation_file, max_steps, resume=False))
    stdout, stderr = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"reference run failed:\n{stderr[-4000:]}")
    return json.loads(stdout.strip().splitlines()[-1].removeprefix("SUMMARY "))


def check(faulted_dir: Path, reference_dir: Path) -> dict:
    """Every kept checkpoint loads and is finite; the final weights equal the reference's; no repeated log row."""
    import csv

    import torch
    from safetensors.torch import load_file

    from mamo_hf.training import list_checkpoints

    checkpoints = list_checkpoints(faulted_dir)
    for checkpoint in checkpoints:
        weights = load_file(checkpoint / "model.safetensors")
        assert all(torch.isfinite(tensor).all() for tensor in weights.values()), checkpoint
        torch.load(checkpoint / "optimizer.bin", weights_only=True)
    faulted, reference = load_file(faulted_dir / "model.safetensors"), load_file(reference_dir / "model.safetensors")
    # Attention key biases are left out: softmax ignores them, their gradient is float noise that Adam amplifies.
    largest_difference = max(
        (faulted[name] - reference[name]).abs().max().item()
        for name in reference
        if not name.endswith("attention.k_proj.bias")
    )
    with open(faulted_dir / "logs" / "mamo" / "metrics.csv") as handle:
        rows = [(row["step"], row["name"]) for row in csv.DictReader(handle)]
    return {
        "checkpoints_kept_and_finite": len(checkpoints),
        "stale_staging_folders": len(list(faulted_dir.glob(".checkpoint-*.tmp"))),
        "max_abs_weight_difference_to_reference": largest_difference,
        "repeated_log_rows": len(rows) - len(set(rows)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run")
    run.add_argument("--max-steps", type=int, default=3000)
    run.add_argument("--pairs", type=int, default=1000)
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--output", type=Path, default=RESULTS)
    run.add_argument("--workdir", type=Path, default=None)
    commands.add_parser("worker").add_argument("arguments")
    args = parser.parse_args()
    if args.command == "worker":
        worker(json.loads(args.arguments))
        return

    started = time.monotonic()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="mamo-soak-"))
    annotation_file, bad_records = write_data(workdir / "data", args.pairs, args.seed)
    reference = {}
    reference_thread = threading.Thread(
        target=lambda: reference.update(reference_run(workdir / "reference", annotation_file, args.max_steps))
    )
    reference_thread.start()
    faulted = faulted_run(workdir / "faulted", annotation_file, args.max_steps, random.Random(args.seed))
    reference_thread.join()
    checks = check(workdir / "faulted", workdir / "reference")
    summary = faulted["summary"]
    report = {
        "command": " ".join(["python benchmarks/soak.py", *sys.argv[1:]]),
        "minutes": round((time.monotonic() - started) / 60, 1),
        "steps": summary["steps"],
        "pairs_trained": summary["steps"] * 16,
        "pairs_trained_by_the_reference": reference["steps"] * 16,
        "bad_records_injected": bad_records,
        "bad_records_skipped_and_counted": len(summary["skipped_records"]),
        "nan_batches_skipped": len(summary["nonfinite_steps"]),
        "nan_batches_skipped_by_the_reference": len(reference["nonfinite_steps"]),
        "same_skipped_steps_as_the_reference": summary["nonfinite_steps"] == reference["nonfinite_steps"],
        "sigkills": faulted["kills"],
        "starts": faulted["attempts"],
        **checks,
    }
    report["passed"] = (
        report["steps"] == args.max_steps
        and report["pairs_trained"] == report["pairs_trained_by_the_reference"]
        and report["bad_records_skipped_and_counted"] == bad_records
        and report["same_skipped_steps_as_the_reference"]
        and report["max_abs_weight_difference_to_reference"] < 1e-5
        and report["repeated_log_rows"] == 0
    )
    print(json.dumps(report, indent=2))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
