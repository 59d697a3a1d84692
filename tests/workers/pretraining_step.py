"""One MamoForPreTraining step under DDP (run by `torchrun --nproc_per_node N`, gloo): writes the mean losses and
the averaged gradients of the student to the file given as argument (rank 0).

The global batch and its masks come from `global_step_inputs`, which the single-process side of the test uses too.
"""

import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from helpers import exit_distributed_worker, random_pairs, tiny_config  # noqa: E402

from mamo_hf import MamoForPreTraining  # noqa: E402

OBJECTIVES = ("loss", "loss_itc", "loss_itm", "loss_mlm", "loss_mim", "loss_mrm")
LENGTHS = [9, 8, 7, 9, 7, 6, 5, 7]  # the second half is shorter: ranks pad their texts to different lengths


def build_model(**overrides):
    torch.manual_seed(0)
    return MamoForPreTraining(tiny_config(**overrides)).train()


def global_step_inputs(model):
    """A global batch of 8 pairs, with explicit masks and image ids where pairs 2 and 6 show the same image."""
    batch = random_pairs(model.config, batch_size=8, length=9, seed=5)
    for row, length in enumerate(LENGTHS):
        batch["input_ids"][row, length - 1] = model.config.text_config.sep_token_id
        batch["input_ids"][row, length:] = model.config.text_config.pad_token_id
        batch["attention_mask"][row] = (torch.arange(9) < length).long()
    batch["pixel_values"][6] = batch["pixel_values"][2]
    batch["image_ids"] = torch.tensor([0, 1, 2, 3, 4, 5, 2, 7])
    batch["image_mask"] = torch.stack(
        [torch.randperm(16, generator=torch.Generator().manual_seed(row)) < 12 for row in range(8)]
    )
    batch["text_mask"] = model.masking.text_mask(
        batch["input_ids"], batch["attention_mask"], torch.Generator().manual_seed(1)
    )
    return batch


def local_inputs(batch, rank, world_size):
    size = batch["input_ids"].shape[0] // world_size
    local = {name: value[rank * size : (rank + 1) * size] for name, value in batch.items()}
    length = int(local["attention_mask"].sum(1).max())  # as a per-rank collator would pad
    for name in ("input_ids", "attention_mask", "text_mask"):
        local[name] = local[name][:, :length]
    return local


def main(output_path: str, overrides: dict):
    dist.init_process_group("gloo")
    rank, world_size = dist.get_rank(), dist.get_world_size()
    model = build_model(**overrides)
    inputs = local_inputs(global_step_inputs(model), rank, world_size)
    ddp = DistributedDataParallel(model, broadcast_buffers=False)
    outputs = ddp(**inputs, generator=torch.Generator().manual_seed(123))
    outputs.loss.backward()
    losses = torch.stack([getattr(outputs, name).detach() for name in OBJECTIVES])
    dist.all_reduce(losses)
    losses /= world_size
    if rank == 0:
        gradients = {name: parameter.grad for name, parameter in model.mamo.named_parameters()}
        gradients.update(
            {
                name: parameter.grad
                for name, parameter in model.named_parameters()
                if not name.startswith(("mamo.", "teacher."))
            }
        )
        torch.save(
            {"losses": losses, "gradients": gradients, "queue": getattr(model, "image_queue", None)}, output_path
        )
    exit_distributed_worker()


if __name__ == "__main__":
    import json

    main(sys.argv[1], json.loads(sys.argv[2]) if len(sys.argv) > 2 else {})
