# Copyright 2026 The mamo_hf authors. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""What a run draws, as functions of the seed and the step, so that a resumed run draws exactly what the
uninterrupted run would have drawn without any random state in the checkpoint: the data order
(`EpochShuffleSampler`), the hard-negative draws (`step_generator`) and dropout (`seed_micro_step`)."""

import torch
from torch.utils.data import Sampler


class EpochShuffleSampler(Sampler):
    """This rank's share of one epoch's permutation, in global batches; the order is a function of (seed, epoch).

    Each epoch draws a permutation from `seed + epoch`; with `block_size = k`, blocks of k consecutive indices are
    shuffled and kept together (minimal pairs stay in one batch when the batch size is a multiple of k). Global
    micro-batch g is `permutation[g·B·W : (g+1)·B·W]` for batch size B and W ranks, and rank r takes its r-th slice
    of B (so two ranks of B see what one process of 2B sees). An epoch holds whole optimizer steps: its number of
    global micro-batches is rounded down to a multiple of `batches_per_step`; the indices left over are not used in
    that epoch. `set_epoch(epoch, start_batch)` resumes in the middle of an epoch, so a resumed run sees exactly the
    batches the uninterrupted run would have seen.
    """

    def __init__(
        self,
        size: int,
        seed: int,
        batch_size: int = 1,
        block_size: int = 1,
        num_replicas: int = 1,
        rank: int = 0,
        batches_per_step: int = 1,
    ):
        self.size, self.seed, self.batch_size, self.block_size = (size, seed, batch_size, block_size)
        self.num_replicas, self.rank, self.batches_per_step = (num_replicas, rank, batches_per_step)
        self.epoch, self.start_batch = 0, 0

    @property
    def batches_per_epoch(self) -> int:
        """Global micro-batches in one epoch (a multiple of `batches_per_step`)."""
        usable = self.size // self.block_size * self.block_size
        batches = usable // (self.batch_size * self.num_replicas)
        return batches // self.batches_per_step * self.batches_per_step

    def set_epoch(self, epoch: int, start_batch: int = 0):
        """Serve the permutation of `epoch` from global micro-batch `start_batch` on."""
        self.epoch, self.start_batch = epoch, start_batch

    def __len__(self):
        return max(0, self.batches_per_epoch - self.start_batch) * self.batch_size

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        blocks = torch.randperm(self.size // self.block_size, generator=generator)
        order = (blocks[:, None] * self.block_size + torch.arange(self.block_size)).flatten()
        for batch in range(self.start_batch, self.batches_per_epoch):
            first = (batch * self.num_replicas + self.rank) * self.batch_size
            yield from order[first : first + self.batch_size].tolist()


def step_generator(seed: int, micro_step: int, device: torch.device) -> torch.Generator:
    """The source of one micro-batch's hard-negative draws: a function of (seed, micro-step), the same on every rank
    (each rank draws for the whole global batch and keeps its rows), so resuming needs no generator state."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seed * 1_000_003 + micro_step)
    return generator


def seed_micro_step(seed: int, micro_step: int) -> None:
    """Seed the global random stream (dropout) from (seed, micro-step): a resumed run draws exactly what the
    uninterrupted run drew, with no random state stored in the checkpoint."""
    torch.manual_seed(seed * 1_000_003 + micro_step + 1)


__all__ = ["EpochShuffleSampler", "seed_micro_step", "step_generator"]
