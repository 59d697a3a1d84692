"""`EpochShuffleSampler` (`mamo_hf.training.sampling`): a seeded permutation per epoch, with blocks (the demo's minimal
pairs) kept together."""

from collections import Counter

import torch


def test_minimal_pairs_share_their_words_and_stay_in_one_batch():
    from mamo_hf.data import DemoCaptionDataset
    from mamo_hf.training import EpochShuffleSampler

    dataset = DemoCaptionDataset(40, seed=5, minimal_pairs=1.0)
    for pair in range(20):
        first, second = dataset[2 * pair]["caption"], dataset[2 * pair + 1]["caption"]
        assert first != second and Counter(first.replace(",", " ").split()) == Counter(
            second.replace(",", " ").split()
        )
    sampler = EpochShuffleSampler(41, seed=0, block_size=2)
    order = list(sampler)
    assert len(order) == len(sampler) == 40 and sorted(order) == list(range(40))
    assert all(order[i] // 2 == order[i + 1] // 2 and order[i] % 2 == 0 for i in range(0, 40, 2))
    sampler.set_epoch(1)
    assert list(sampler) != order
    # Blocks of one are the plain per-epoch permutation.
    assert (
        list(EpochShuffleSampler(10, seed=3))
        == torch.randperm(10, generator=torch.Generator().manual_seed(3)).tolist()
    )
