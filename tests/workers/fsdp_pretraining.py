"""MAMO pre-training steps under FSDP2 (`fully_shard`, every `MamoVisionLayer` and `MamoTextLayer` a shard unit,
as `examples/configs/accelerate_fsdp.yaml` asks) on `torchrun --nproc_per_node 2` (gloo, CPU), or unsharded in one
process, on the same global batches: each rank takes its half of every batch of 8 pairs.

    python fsdp_pretraining.py OUTPUT_DIR STEPS [--save-at N] [--resume-from DIR]

Writes `OUTPUT_DIR/result.safetensors` (rank 0): the loss of every step (mean over ranks) and the full state after
the last step (student, EMA teacher, ITC queue; sharded parameters gathered). `--save-at N` also writes a
`torch.distributed.checkpoint` of model and optimizer after step N to `OUTPUT_DIR/checkpoint`; `--resume-from DIR`
loads one and continues with the step after it."""

import argparse
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from safetensors.torch import save_file
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from helpers import exit_distributed_worker  # noqa: E402

from mamo_hf import JointMasking, MamoForPreTraining  # noqa: E402
from mamo_hf.data import DemoCaptionDataset, PretrainingCollator, tiny_config_and_processor  # noqa: E402
from mamo_hf.modeling_mamo import MamoTextLayer, MamoVisionLayer  # noqa: E402
from mamo_hf.training.sampling import seed_micro_step, step_generator  # noqa: E402

GLOBAL_BATCH, SEED = 8, 3


def sharded(model: MamoForPreTraining) -> MamoForPreTraining:
    for module in model.modules():
        if isinstance(module, (MamoVisionLayer, MamoTextLayer)):
            fully_shard(module)
    return fully_shard(model)


def full_state(model) -> dict[str, torch.Tensor]:
    state = model.state_dict()
    return {
        name: (value.full_tensor() if isinstance(value, DTensor) else value).detach().float().clone()
        for name, value in state.items()
    }


def main(output_dir: Path, steps: int, save_at: int | None, resume_from: Path | None) -> None:
    world, rank = 1, 0
    if "RANK" in os.environ:
        dist.init_process_group("gloo")
        world, rank = dist.get_world_size(), dist.get_rank()
    config, processor = tiny_config_and_processor(32, 16, queue_size=16)
    torch.manual_seed(SEED)
    model = MamoForPreTraining(config).train()
    if world > 1:
        model = sharded(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    start = 0
    if resume_from is not None:
        model_state, optimizer_state = get_state_dict(model, optimizer)
        state = {"model": model_state, "optimizer": optimizer_state}
        dcp.load(state, checkpoint_id=str(resume_from))
        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
        start = int((resume_from / "step").read_text())
    dataset = DemoCaptionDataset(GLOBAL_BATCH * steps, seed=SEED, image_size=32, max_objects=1)
    collator = PretrainingCollator(processor, masking=JointMasking.from_config(config))
    losses = []
    for step in range(start, steps):
        share = GLOBAL_BATCH // world
        first = step * GLOBAL_BATCH + rank * share
        batch = collator([dataset[index] for index in range(first, first + share)])
        seed_micro_step(SEED, step)
        outputs = model(**batch, generator=step_generator(SEED, step, torch.device("cpu")))
        outputs.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        model.update_teacher()
        loss = outputs.loss.detach().clone()
        if world > 1:
            dist.all_reduce(loss)
        losses.append(loss / world)
        if save_at is not None and step + 1 == save_at:
            model_state, optimizer_state = get_state_dict(model, optimizer)
            state = {"model": model_state, "optimizer": optimizer_state}
            dcp.save(state, checkpoint_id=str(output_dir / "checkpoint"))
            if rank == 0:
                (output_dir / "checkpoint" / "step").write_text(str(save_at))
    state = full_state(model)
    if rank == 0:
        save_file({"losses": torch.stack(losses).float(), **state}, str(output_dir / "result.safetensors"))
    if world > 1:
        exit_distributed_worker()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("steps", type=int)
    parser.add_argument("--save-at", type=int, default=None)
    parser.add_argument("--resume-from", type=Path, default=None)
    arguments = parser.parse_args()
    arguments.output_dir.mkdir(parents=True, exist_ok=True)
    main(arguments.output_dir, arguments.steps, arguments.save_at, arguments.resume_from)
