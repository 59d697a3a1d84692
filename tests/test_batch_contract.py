"""One batch contract: the collator draws each pair's masks from its key; every training loop feeds them to the model.

The Accelerate loop of `mamo-hf pretrain` and `Trainer` (`examples/pretrain_with_trainer.py`) take the same batches
from `PretrainingCollator` and must mask and score them alike; a pair's masks must not depend on its batch, the
DataLoader workers or the epoch's batching; the bad-record report travels with the batch, not as a model input.
"""

import inspect
import json

import pytest
import torch
from accelerate import Accelerator
from helpers import tiny_tokenizer
from PIL import Image
from transformers import Trainer, TrainingArguments

from mamo_hf import JointMasking, MamoForPreTraining
from mamo_hf.data import (
    CaptionDataset,
    DemoCaptionDataset,
    PretrainingBatch,
    PretrainingCollator,
    SkippedSample,
    tiny_config_and_processor,
)
from mamo_hf.training.loop import forward_backward

OBJECTIVES = ("itc", "itm", "mlm", "mim", "mrm")


pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


def setup(image_size=32, **overrides):
    config, processor = tiny_config_and_processor(image_size, 8, tiny_tokenizer(), **overrides)
    return config, processor, PretrainingCollator(processor, masking=JointMasking.from_config(config))


def scene_items(count: int, seed: int = 0) -> list[dict]:
    """Dataset items of generated scenes (image ids 0, 1, ..., keys from the demo dataset)."""
    dataset = DemoCaptionDataset(count, seed=seed, image_size=32, max_objects=2)
    return [dataset[index] for index in range(count)]


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
