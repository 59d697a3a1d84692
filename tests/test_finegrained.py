"""The fine-grained benchmark: hard negatives that differ only in binding, and its zero-shot scoring."""

from collections import Counter

import pytest
import torch

from mamo_hf import MamoForImageTextRetrieval, MamoForPreTraining
from mamo_hf.data import tiny_config_and_processor
from mamo_hf.data.demo import binding_scene, demo_tokenizer, swap_attribute
from mamo_hf.data.finegrained import NEGATIVE_TYPES, finegrained_examples
from mamo_hf.evaluation.finegrained import candidate_scores, evaluate_finegrained, finegrained_metrics


def test_examples_are_deterministic_and_every_negative_differs_from_the_caption():
    first, again = finegrained_examples(20, seed=3), finegrained_examples(20, seed=3)
    assert [e.caption for e in first] == [e.caption for e in again]
    assert [e.negatives for e in first] == [e.negatives for e in again]
    assert [e.caption for e in finegrained_examples(20, seed=4)] != [e.caption for e in first]
    for example in first:
        assert set(example.negatives) == set(NEGATIVE_TYPES)
        assert example.caption not in example.negatives.values()
        assert len(set(example.negatives.values())) == len(NEGATIVE_TYPES)


def test_swap_negatives_keep_the_bag_of_words_and_count_drops_one_object():
    tokenizer = demo_tokenizer()
    for example in finegrained_examples(50, seed=0, num_objects=3):
        words = Counter(example.caption.replace(",", " ").split())
        for kind in ("colour", "shape", "size", "position"):
            assert Counter(example.negatives[kind].replace(",", " ").split()) == words, (
                kind
            )  # only the binding changes
        assert example.negatives["count"].count(" at the ") == len(example.scene) - 1
        for text in (example.caption, *example.negatives.values()):  # the demo vocabulary covers every word
            assert tokenizer.unk_token_id not in tokenizer(text)["input_ids"]


def test_scene_constraints_and_swaps():
    import random

    scene = binding_scene(random.Random(0), num_objects=3)
    first, second = scene[:2]
    assert first.colour != second.colour and first.shape != second.shape and first.size != second.size
    assert len({(o.row, o.column) for o in scene}) == 3
    swapped = swap_attribute(scene, "position")
    assert (swapped[0].row, swapped[0].column) == (second.row, second.column) and swapped[0].colour == first.colour
    with pytest.raises(ValueError, match="num_objects"):
        binding_scene(random.Random(0), num_objects=4)


def test_metrics_count_strict_wins_per_type_and_overall():
    table = torch.tensor(
        [
            [0.9, 0.1, 0.2, 0.3, 0.4, 0.5],  # beats every negative
            [0.5, 0.6, 0.1, 0.1, 0.1, 0.1],  # loses to the colour swap
            [0.5, 0.5, 0.1, 0.1, 0.1, 0.1],  # a tie counts as wrong
            [0.1, 0.2, 0.2, 0.2, 0.2, 0.2],  # loses to all
        ]
    )
    metrics = finegrained_metrics({"itm": table})
    assert metrics["itm_accuracy"] == 25.0
    assert metrics["itm_colour"] == 25.0 and metrics["itm_shape"] == 75.0 and metrics["itm_count"] == 75.0


@pytest.fixture(scope="module")
def model_and_processor():
    config, processor = tiny_config_and_processor(32, patch_size=8)
    torch.manual_seed(0)
    return MamoForPreTraining(config).eval(), processor


def test_scores_equal_direct_itc_and_itm_of_each_pair(model_and_processor, tmp_path):
    model, processor = model_and_processor
    examples = finegrained_examples(3, seed=1, image_size=32)
    scores = candidate_scores(model, processor, examples, batch_size=2)
    assert scores["itc"].shape == scores["itm"].shape == (3, 1 + len(NEGATIVE_TYPES))
    model.save_pretrained(tmp_path)
    retrieval = MamoForImageTextRetrieval.from_pretrained(tmp_path).eval()
    for row, example in enumerate(examples):
        texts = [example.caption] + [example.negatives[name] for name in NEGATIVE_TYPES]
        inputs = processor(images=[example.image] * len(texts), text=texts, padding=True, return_tensors="pt")
        with torch.no_grad():
            outputs = retrieval(**inputs)
        torch.testing.assert_close(scores["itm"][row], outputs.itm_scores, atol=1e-5, rtol=1e-4)
        direct_itc = (outputs.image_embeds * outputs.text_embeds).sum(-1)
        torch.testing.assert_close(scores["itc"][row], direct_itc, atol=1e-5, rtol=1e-4)
    metrics = evaluate_finegrained(retrieval, processor, examples)
    assert metrics == finegrained_metrics(candidate_scores(model, processor, examples))


def test_a_model_without_itm_head_is_named(model_and_processor):
    model, processor = model_and_processor
    with pytest.raises(ValueError, match="MamoModel has no ITM head"):
        candidate_scores(model.mamo, processor, finegrained_examples(1))


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


def test_minimal_pairs_need_an_even_batch_and_demo_data():
    from mamo_hf.training import PretrainingArguments, build_train_dataset

    with pytest.raises(ValueError, match="even `--batch-size`"):
        build_train_dataset(PretrainingArguments(demo_minimal_pairs=1.0, batch_size=7), 64)
    with pytest.raises(ValueError, match="built-in demo data only"):
        build_train_dataset(PretrainingArguments(demo_minimal_pairs=1.0, train_file=["x.json"]), 64)


def test_a_fraction_of_minimal_pairs_mixes_pairs_and_independent_scenes():
    from mamo_hf.data.demo import minimal_pair_scene

    def is_minimal_pair(pair):
        first, second = (minimal_pair_scene(0, 2 * pair + member, fraction=0.5) for member in (0, 1))
        return sorted(o.colour for o in first) == sorted(o.colour for o in second) and first != second

    share = sum(is_minimal_pair(pair) for pair in range(400)) / 400
    assert 0.4 < share < 0.6
    assert minimal_pair_scene(0, 7, fraction=0.5) == minimal_pair_scene(0, 7, fraction=0.5)
