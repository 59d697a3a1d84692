"""`pretrain` on two processes (run by `torchrun --nproc_per_node 2`, gloo), with `PretrainingArguments` overrides
given as JSON.

Each rank writes its final state (student, teacher and queue, flattened into one vector) to
`rank{RANK}.safetensors` in the run folder, so that the test can check the ranks agree without a second process
group (Accelerate closes its own at the end of training)."""

import json
import os
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from helpers import exit_distributed_worker  # noqa: E402

from mamo_hf.training import PretrainingArguments, pretrain  # noqa: E402


def main(output_dir: str, overrides: dict):
    settings = {
        "output_dir": output_dir,
        "image_size": 32,
        "demo_pairs": 256,
        "demo_max_objects": 1,
        "eval_pairs": 0,
        "batch_size": 4,
        "max_steps": 3,
        "learning_rate": 1e-3,
        "warmup_steps": 2,
        "num_workers": 0,
        "checkpoint_every": 0,
        "log_every": 1,
        "report_to": ["csv"],
        "seed": 3,
        "cpu": True,
    }
    args = PretrainingArguments(**(settings | overrides))
    model = pretrain(args).model
    state = torch.cat([tensor.detach().flatten().float() for tensor in model.state_dict().values()])
    save_file({"state": state}, str(Path(output_dir) / f"rank{os.environ['RANK']}.safetensors"))
    exit_distributed_worker()


if __name__ == "__main__":
    main(sys.argv[1], json.loads(sys.argv[2]))
