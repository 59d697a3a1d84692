"""Small builders shared by the tests: tiny configs, a real BERT tokenizer from a vocab, image-text batches; the
exit of the torchrun workers."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import load_file
from transformers import BertTokenizer

from mamo_hf import MamoConfig
from mamo_hf.configuration_mamo import special_token_ids
from mamo_hf.data import PretrainingCollator
from mamo_hf.training import PretrainingArguments

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = (
    "a an the of on in at and with is are to left right top bottom middle center small large big red green blue "
    "yellow white black purple orange circle square triangle star picture photo image shows there two one three "
    "next above below near cat dog sits"
).split()


def tiny_tokenizer() -> BertTokenizer:
    """A real (Rust) BERT tokenizer over a few dozen words: [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4."""
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS + WORDS)}
    return BertTokenizer(vocab=vocab)


def tiny_config(**overrides) -> MamoConfig:
    """`MamoConfig.tiny` (no dropout) with the tiny tokenizer's vocabulary and special tokens."""
    tokenizer = tiny_tokenizer()
    return MamoConfig.tiny(vocab_size=len(tokenizer), special_token_ids=special_token_ids(tokenizer), **overrides)


def random_pairs(config: MamoConfig, batch_size: int = 4, length: int = 9, seed: int = 0):
    """A batch of random images and right-padded token ids with [CLS] ... [SEP] and varied lengths."""
    generator = torch.Generator().manual_seed(seed)
    size = config.vision_config.image_size
    pixel_values = torch.randn(batch_size, 3, size, size, generator=generator)
    text = config.text_config
    input_ids = torch.randint(5, text.vocab_size, (batch_size, length), generator=generator)
    attention_mask = torch.ones(batch_size, length, dtype=torch.long)
    for row in range(batch_size):
        real = length - (row % 3) * 2  # lengths length, length-2, length-4, ...
        input_ids[row, 0] = text.cls_token_id
        input_ids[row, real - 1] = text.sep_token_id
        input_ids[row, real:] = text.pad_token_id
        attention_mask[row, real:] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask, "pixel_values": pixel_values}


def exit_distributed_worker() -> None:
    """End a torchrun test worker once its results are written: a barrier (when a process group is still open),
    then `os._exit(0)`.

    Interpreter teardown is skipped on purpose. Destroying a gloo process group at exit, while a DDP reducer or a
    finished collective still holds Python-owned tensors, can deadlock: the destructor joins gloo's worker thread
    while holding the GIL, and that thread waits for the GIL to free the tensors (seen hanging a CI run, torch 2.13).
    """
    if dist.is_initialized():
        dist.barrier()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


# A pre-training run of a few steps of a tiny model on 32 px demo data, logging every step to CSV (the tests' and the
# two-process worker's `PretrainingArguments`, before their overrides).
TINY_RUN = {
    "image_size": 32,
    "demo_pairs": 256,
    "demo_max_objects": 1,
    "eval_pairs": 0,
    "batch_size": 8,
    "max_steps": 6,
    "learning_rate": 1e-3,
    "warmup_steps": 2,
    "num_workers": 0,
    "checkpoint_every": 0,
    "log_every": 1,
    "report_to": ["csv"],
    "seed": 3,
}


def run_in_fresh_process(code: str, folder: Path) -> subprocess.CompletedProcess:
    """Run `code` (`sys.argv[1]` is `folder`) in a new interpreter working in `folder`: offline, with a module cache of
    its own for `trust_remote_code` and no `PYTHONPATH`, so that only installed packages and the code a saved folder
    carries are importable (the code itself may block `mamo_hf`)."""
    environment = {**os.environ, "HF_MODULES_CACHE": str(Path(folder) / "modules"), "HF_HUB_OFFLINE": "1"}
    environment.pop("PYTHONPATH", None)
    return subprocess.run(
        [sys.executable, "-c", code, str(folder)],
        cwd=folder,
        env=environment,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )


def poison_batches(monkeypatch, calls: set[int]):
    """Give the collator's `calls`-th batches (1-based) NaN pixels."""
    real_call = PretrainingCollator.__call__
    counter = {"calls": 0}

    def call(self, items):
        batch = real_call(self, items)
        counter["calls"] += 1
        if counter["calls"] in calls:
            batch["pixel_values"] = torch.full_like(batch["pixel_values"], float("nan"))
        return batch

    monkeypatch.setattr(PretrainingCollator, "__call__", call)


def tiny_run(tmp_path, name="run", **overrides) -> PretrainingArguments:
    """A pre-training run of a few steps of a tiny model on 32 px demo data, logging every step to CSV."""
    settings = TINY_RUN | {"output_dir": str(tmp_path / name)}
    return PretrainingArguments(**(settings | overrides))


def logged(run_dir, name="train/loss") -> dict[int, float]:
    with open(Path(run_dir) / "logs" / "mamo" / "metrics.csv") as handle:
        return {int(row["step"]): float(row["value"]) for row in csv.DictReader(handle) if row["name"] == name}


def final_weights(run_dir) -> dict[str, torch.Tensor]:
    return load_file(Path(run_dir) / "model.safetensors")


def assert_same_weights(first, second, atol=0.0, rtol=0.0):
    """Equal weights, but for attention key biases: softmax ignores them, so their gradient is zero up to float
    noise, which Adam (dividing by its own tiny second moment) turns into steps of up to the learning rate."""
    assert first.keys() == second.keys()
    for name in first:
        key_bias = name.endswith("attention.k_proj.bias")
        torch.testing.assert_close(first[name], second[name], atol=1e-2 if key_bias else atol, rtol=rtol, msg=name)


WORKERS = Path(__file__).parent / "workers"


def run_two_processes(output_dir: Path, **overrides) -> subprocess.CompletedProcess:
    """`pretrain` on two gloo processes (see `workers/pretrain_two_ranks.py`) with `PretrainingArguments` overrides."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--standalone",
        str(WORKERS / "pretrain_two_ranks.py"),
        str(output_dir),
        json.dumps(overrides),
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=environment)
