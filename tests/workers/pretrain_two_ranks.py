"""`pretrain` on two processes (run by `torchrun --nproc_per_node 2`, gloo): checks that the ranks end with the
same student, teacher and queue, and writes `ranks.json` into the run folder (rank 0)."""

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from mamo_hf.training import PretrainingArguments, pretrain


def main(output_dir: str, model_config: dict):
    args = PretrainingArguments(
        output_dir=output_dir,
        image_size=32,
        demo_pairs=256,
        demo_max_objects=1,
        eval_pairs=0,
        batch_size=4,
        max_steps=3,
        learning_rate=1e-3,
        warmup_steps=2,
        num_workers=0,
        checkpoint_every=0,
        log_every=1,
        report_to=["csv"],
        seed=3,
        model_config=model_config,
        cpu=True,
    )
    model = pretrain(args).model
    if not dist.is_initialized():  # Accelerate's end_training closes the process group
        dist.init_process_group("gloo")
    state = torch.cat([tensor.flatten().float() for tensor in model.state_dict().values()])
    states = [torch.empty_like(state) for _ in range(dist.get_world_size())]
    dist.all_gather(states, state)
    if dist.get_rank() == 0:
        report = {
            "world_size": dist.get_world_size(),
            "ranks_agree": all(torch.equal(states[0], other) for other in states[1:]),
        }
        (Path(output_dir) / "ranks.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1], json.loads(sys.argv[2]))
