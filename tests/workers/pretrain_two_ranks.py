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
from helpers import TINY_RUN, exit_distributed_worker  # noqa: E402

from mamo_hf.training import PretrainingArguments, pretrain  # noqa: E402


def main(output_dir: str, overrides: dict):
    settings = TINY_RUN | {"output_dir": output_dir, "batch_size": 4, "max_steps": 3, "cpu": True}
    args = PretrainingArguments(**(settings | overrides))
    model = pretrain(args).model
    state = torch.cat([tensor.detach().flatten().float() for tensor in model.state_dict().values()])
    save_file({"state": state}, str(Path(output_dir) / f"rank{os.environ['RANK']}.safetensors"))
    exit_distributed_worker()


if __name__ == "__main__":
    main(sys.argv[1], json.loads(sys.argv[2]))
