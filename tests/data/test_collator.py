"""One batch contract (`mamo_hf.data.collator`): `PretrainingCollator` draws each pair's masks (and caption negatives)
from its key; every training loop feeds them to the model. The Accelerate loop of `mamo-hf pretrain` and `Trainer`
(`examples/pretrain_with_trainer.py`) take the same batches and must mask and score them alike; a pair's masks and
negatives must not depend on its batch, the DataLoader workers, the ranks or the epoch's batching; the bad-record
report travels with the batch, not as a model input."""

import inspect
import json

import pytest
import torch
from accelerate import Accelerator
from helpers import CAPTION, setup_with_negatives, tiny_tokenizer, two_colour_image
from PIL import Image
from transformers import Trainer, TrainingArguments

from mamo_hf import JointMasking, MamoForPreTraining, MamoImageProcessorPil, MamoProcessor
from mamo_hf.data import (
    CaptionDataset,
    CaptionNegatives,
    DemoCaptionDataset,
    PretrainingBatch,
    PretrainingCollator,
    SkippedSample,
    demo_tokenizer,
    tiny_config_and_processor,
)
from mamo_hf.training import EpochShuffleSampler
from mamo_hf.training.loop import forward_backward

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")

OBJECTIVES = ("itc", "itm", "mlm", "mim", "mrm")


def test_collator_outputs_ids_skips_and_truncation():
    processor = MamoProcessor(MamoImageProcessorPil(size={"height": 32, "width": 32}), demo_tokenizer())
    skip = SkippedSample("gone.png", "missing image file")
    items = [
        {"image": two_colour_image(20, 10), "caption": "a red circle", "image_id": 7, "skipped": (), "sample_key": 11},
        {
            "image": two_colour_image(),
            "caption": "there is " + "a small red circle and " * 5,
            "image_id": 7,
            "skipped": (skip,),
            "sample_key": 12,
        },
        {"image": two_colour_image(), "caption": "a blue square", "image_id": 3, "skipped": (), "sample_key": 13},
    ]
    batch = PretrainingCollator(processor, max_length=8)(items)
    assert set(batch) == {"pixel_values", "input_ids", "attention_mask", "image_ids"}  # model inputs only
    assert batch["pixel_values"].shape == (3, 3, 32, 32)
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (3, 8)
    assert batch["attention_mask"].sum(dim=1).tolist() == [5, 8, 5]  # [CLS] + 3 words + [SEP]; truncated
    assert batch["image_ids"].dtype == torch.long and batch["image_ids"].tolist() == [7, 7, 3]
    assert batch.skipped == [skip]
    short = PretrainingCollator(processor)([items[0], items[2]])
    assert short["input_ids"].shape == (2, 5)  # padded to the longest caption


def scene_items(count: int, seed: int = 0) -> list[dict]:
    """Dataset items of generated scenes (image ids 0, 1, ..., keys from the demo dataset)."""
    dataset = DemoCaptionDataset(count, seed=seed, image_size=32, max_objects=2)
    return [dataset[index] for index in range(count)]


def setup(image_size=32, **overrides):
    config, processor = tiny_config_and_processor(image_size, 8, tiny_tokenizer(), **overrides)
    return config, processor, PretrainingCollator(processor, masking=JointMasking.from_config(config))


def test_the_trainer_path_and_the_accelerate_path_mask_and_score_a_batch_alike(tmp_path):
    """Two pairs: each image's only candidate negative is the other text, so ITM draws nothing at random, and the
    tiny config has no dropout: the two loops must agree exactly on every mask and every loss."""
    config, processor, collator = setup()
    items = scene_items(2)
    torch.manual_seed(0)
    model = MamoForPreTraining(config).train()

    arguments = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=2,
        remove_unused_columns=False,  # the collator reads the items' images and captions
        report_to=[],
        use_cpu=True,
        seed=5,
    )
    trainer = Trainer(model=model, args=arguments, train_dataset=items, data_collator=collator)
    trainer_batch = next(iter(trainer.get_train_dataloader()))
    _, trainer_outputs = trainer.compute_loss(model, trainer._prepare_inputs(trainer_batch), return_outputs=True)

    order = trainer_batch["image_ids"].tolist()  # the Trainer's sampler may have swapped the two pairs
    loop_batch = collator([items[index] for index in order])
    for name in ("image_mask", "text_mask", "input_ids", "pixel_values"):
        torch.testing.assert_close(trainer_batch[name], loop_batch[name], rtol=0, atol=0, msg=name)
    loop_outputs = forward_backward(Accelerator(cpu=True), model, loop_batch, seed=5, micro_step=0)
    for name in OBJECTIVES:
        trainer_loss, loop_loss = getattr(trainer_outputs, f"loss_{name}"), getattr(loop_outputs, f"loss_{name}")
        torch.testing.assert_close(trainer_loss, loop_loss, rtol=0, atol=0, msg=name)

    # The masks are what the losses read: other masks give another MLM and MIM loss.
    redrawn = {
        **loop_batch,
        "text_mask": loop_batch["text_mask"].roll(1, dims=1) & loop_batch["attention_mask"].bool(),
    }
    redrawn["image_mask"] = loop_batch["image_mask"].flip(1)
    with torch.no_grad():
        other = model(**redrawn)
    assert not torch.equal(other.loss_mim, loop_outputs.loss_mim)


def test_a_pair_is_masked_alike_in_any_batch_with_any_workers():
    config, processor, collator = setup()
    dataset = DemoCaptionDataset(12, seed=3, image_size=32, max_objects=3)

    def masks_by_pair(batches):
        found = {}
        for batch in batches:
            for row, image_id in enumerate(batch["image_ids"].tolist()):
                length = int(batch["attention_mask"][row].sum())
                found[image_id] = (batch["image_mask"][row], batch["text_mask"][row, :length])
        return found

    loader = torch.utils.data.DataLoader(dataset, batch_size=4, collate_fn=collator)
    in_order = masks_by_pair(loader)
    shuffled = masks_by_pair(
        torch.utils.data.DataLoader(
            dataset,
            batch_size=3,
            shuffle=True,
            collate_fn=collator,
            num_workers=2,
            generator=torch.Generator().manual_seed(1),
        )
    )
    alone = masks_by_pair(collator([dataset[index]]) for index in range(len(dataset)))
    assert in_order.keys() == shuffled.keys() == alone.keys() == set(range(12))
    for image_id, (image_mask, text_mask) in in_order.items():
        for other in (shuffled, alone):
            assert torch.equal(other[image_id][0], image_mask) and torch.equal(other[image_id][1], text_mask)
        assert int(image_mask.sum()) == round(config.image_mask_ratio * image_mask.numel())
        assert text_mask[1:-1].any() and not text_mask[0] and not text_mask[-1]  # never [CLS] or [SEP]

    dataset.set_epoch(1)  # a new epoch draws new masks
    next_epoch = masks_by_pair(loader)
    assert any(not torch.equal(next_epoch[key][0], in_order[key][0]) for key in in_order)


def test_the_model_draws_masks_with_the_collators_policy_when_none_come_with_the_batch():
    config, processor, collator = setup(image_mask_ratio=0.5, text_mask_ratio=0.4)
    model = MamoForPreTraining(config)
    assert model.masking == collator.masking == JointMasking(0.5, 0.4, 8, (0, 2, 3, 4))
    batch = collator(scene_items(3))
    drawn = model.masking.image_mask(3, 16, torch.Generator().manual_seed(0))
    assert drawn.sum(1).tolist() == batch["image_mask"].sum(1).tolist() == [8, 8, 8]


def test_the_bad_record_report_travels_with_the_batch_through_workers_and_is_no_model_input(tmp_path):
    Image.new("RGB", (16, 16), (200, 30, 30)).save(tmp_path / "red.png")
    records = [{"image": "red.png", "caption": f"a red square number {i}"} for i in range(5)]
    records.insert(2, {"image": "gone.png", "caption": "a lost picture"})
    (tmp_path / "captions.json").write_text(json.dumps(records))
    config, processor, collator = setup()
    loader = torch.utils.data.DataLoader(
        CaptionDataset(tmp_path / "captions.json"), batch_size=3, collate_fn=collator, num_workers=2
    )
    batches = list(loader)
    assert all(isinstance(batch, PretrainingBatch) for batch in batches)
    assert [skipped for batch in batches for skipped in batch.skipped] == [
        SkippedSample(f"{tmp_path / 'captions.json'}, record 2, image {tmp_path / 'gone.png'}", "missing image file")
    ]
    model = MamoForPreTraining(config)
    assert set(batches[0]) <= set(inspect.signature(model.forward).parameters)  # every key is a model input
    moved = type(batches[0])({name: value for name, value in batches[0].items()})  # how Trainer moves a batch
    assert moved.skipped == [] and set(moved) == set(batches[0])


def items_of(captions):
    return [
        {
            "image": Image.new("RGB", (32, 32), (40 * i, 90, 200)),
            "caption": text,
            "image_id": i,
            "skipped": (),
            "sample_key": i,
        }
        for i, text in enumerate(captions)
    ]


def test_the_collator_encodes_each_captions_negatives_and_pads_missing_ones():
    config, processor, collator = setup_with_negatives()
    batch = collator(items_of([CAPTION, "a plane", "a red circle and a blue square"]))
    ids, mask = batch["negative_input_ids"], batch["negative_attention_mask"]
    assert ids.shape[:2] == mask.shape[:2] == (3, 3)
    valid = mask.bool().any(-1)
    assert valid[0].all() and valid[2].all() and valid[1].sum() == 1  # "a plane": only "a helicopter"
    decoded = processor.tokenizer.decode(ids[0, 0][mask[0, 0].bool()], skip_special_tokens=True)
    assert decoded in CaptionNegatives(3)(CAPTION, 0)
    assert (ids[1, 1:] == processor.tokenizer.pad_token_id).all()


def test_every_rank_draws_the_negatives_one_process_draws():
    """Negatives come from each item's key, so splitting the batches over ranks changes none."""
    _, _, collator = setup_with_negatives()
    dataset = DemoCaptionDataset(16, seed=2, image_size=32, max_objects=2)

    def negatives_by_pair(num_replicas):
        found = {}
        for rank in range(num_replicas):
            sampler = EpochShuffleSampler(16, seed=0, batch_size=4, num_replicas=num_replicas, rank=rank)
            loader = torch.utils.data.DataLoader(dataset, batch_size=4, sampler=sampler, collate_fn=collator)
            for batch in loader:
                for row, image_id in enumerate(batch["image_ids"].tolist()):
                    found[image_id] = batch["negative_input_ids"][row][batch["negative_attention_mask"][row].bool()]
        return found

    one, two = negatives_by_pair(1), negatives_by_pair(2)
    assert one.keys() == two.keys() == set(range(16))
    assert all(torch.equal(one[key], two[key]) for key in one)


def test_caption_negatives_come_with_every_kind_of_dataset(tmp_path):
    """Map-style 🤗 datasets and streams (the path of WebDataset/Parquet shards too) give items with a key."""
    import itertools

    import datasets

    from mamo_hf.data import HFCaptionDataset, StreamingCaptionDataset

    _, _, collator = setup_with_negatives()
    images = [Image.new("RGB", (16, 16), (60 * i, 20, 200)) for i in range(4)]
    table = datasets.Dataset.from_dict({"image": images, "caption": [CAPTION] * 4}).cast_column(
        "image", datasets.Image()
    )
    sources = {
        "map": HFCaptionDataset(table),
        "stream": StreamingCaptionDataset.from_hf_dataset(table.to_iterable_dataset(), rank=0, world_size=1),
    }
    for name, dataset in sources.items():
        items = list(itertools.islice(iter(dataset), 4)) if name == "stream" else [dataset[i] for i in range(4)]
        batch = collator(items)
        assert batch["negative_attention_mask"].bool().any(-1).all(), name
        again = collator(items)
        assert torch.equal(batch["negative_input_ids"], again["negative_input_ids"]), name
