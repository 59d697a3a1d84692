"""The batch collator of pre-training: dataset items (`mamo_hf.data.records`) to `MamoForPreTraining` inputs.

The collator is where the masks of a step come from (as `DataCollatorForLanguageModeling` draws BERT's): given the
model's `JointMasking` policy, it draws each pair's image and text masks from the pair's own key, so that every
training loop (the Accelerate loop of `mamo-hf pretrain`, `Trainer`) masks alike and the model only consumes them.
The bad records a batch stands in for travel with it as an attribute, `PretrainingBatch.skipped`, not as a model
input.
"""

from collections.abc import Sequence

import torch

from ..losses_mamo import JointMasking
from .negatives import CaptionNegatives
from .records import SkippedSample


class PretrainingBatch(dict):
    """A pre-training batch: its keys are model inputs (`model(**batch)`); `skipped` lists the bad records its items
    stand in for (`SkippedSample`s), for the training loop to count.

    A plain `dict` otherwise: `Trainer` and Accelerate rebuild it as `type(batch)({...})` when they move it to a
    device, which keeps the inputs and drops the report.
    """

    def __init__(self, *args, skipped: Sequence[SkippedSample] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.skipped = list(skipped)


class ImageTextCollator:
    """Base of the collators: images and texts to model inputs, texts padded to the longest in the batch and cut at
    `max_length` tokens ([CLS] and [SEP] included). Subclasses say which items' fields are the images and texts and
    add their own inputs (labels, masks)."""

    def __init__(self, processor, max_length: int = 40):
        self.processor = processor
        self.max_length = max_length

    def encode(self, images: list, texts: list[str]) -> dict[str, torch.Tensor]:
        """`pixel_values`, `input_ids` and `attention_mask` of `images` and `texts` (one text per image, or per pair
        of images)."""
        return dict(
            self.processor(
                images=images,
                text=texts,
                padding="longest",
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
        )


class PretrainingCollator(ImageTextCollator):
    """Batch dataset items for `MamoForPreTraining`.

    Args:
        processor (`MamoProcessor`): resizes and normalises the images and tokenises the captions.
        max_length (`int`): captions are truncated to this many tokens (special tokens included).
        masking (`JointMasking`, *optional*): the masking policy of the model to train,
            `JointMasking.from_config(model.config)`. With it, each pair's masks are drawn from its own generator,
            seeded by the item's `sample_key` (seed, epoch and index): a pair is masked the same whatever its batch,
            the number of processes, the DataLoader workers or the gradient accumulation, and a resumed run draws
            the masks again. Without it, the batch carries no masks (fine-tuning, or a model that draws its own).
        negatives (`CaptionNegatives`, *optional*): rule-based hard negatives of each caption, drawn from the item's
            `sample_key` (the same in every process and on resume), for ITC's denominator and ITM.

    Calling it on a list of items returns a `PretrainingBatch` with `pixel_values` (`[batch, 3, H, W]` float),
    `input_ids` and `attention_mask` (`[batch, length]` long, padded to the longest caption, `length <=
    max_length`), `image_ids` (`[batch]` long) and, with `masking`, `image_mask` (`[batch, num_patches]` bool) and
    `text_mask` (`[batch, length]` bool), with `negatives` `negative_input_ids` and `negative_attention_mask`
    (`[batch, k, negative_length]` long; a caption with fewer than `k` negatives has rows of padding with an attention
    mask of zeros); its `skipped` attribute lists the batch's `SkippedSample`s.
    """

    def __init__(
        self,
        processor,
        max_length: int = 40,
        masking: JointMasking | None = None,
        negatives: CaptionNegatives | None = None,
    ):
        super().__init__(processor, max_length)
        self.masking = masking
        self.negatives = negatives

    def __call__(self, items: Sequence[dict]) -> PretrainingBatch:
        inputs = self.encode([item["image"] for item in items], [item["caption"] for item in items])
        inputs["image_ids"] = torch.tensor([item["image_id"] for item in items], dtype=torch.long)
        if self.masking is not None:
            num_patches = self.masking.num_patches(*inputs["pixel_values"].shape[-2:])
            keys = [item["sample_key"] for item in items]
            inputs["image_mask"], inputs["text_mask"] = self.masking.masks_per_pair(
                inputs["input_ids"], inputs["attention_mask"], num_patches, keys
            )
        if self.negatives is not None:
            inputs.update(self.encode_negatives(items))
        return PretrainingBatch(inputs, skipped=[skipped for item in items for skipped in item["skipped"]])

    def encode_negatives(self, items: Sequence[dict]) -> dict[str, torch.Tensor]:
        """`negative_input_ids` and `negative_attention_mask` `[batch, k, length]` of the items' caption negatives."""
        k = self.negatives.k
        drawn = [self.negatives(item["caption"], item["sample_key"]) for item in items]
        texts = [text for negatives in drawn for text in negatives] or [""]
        tokens = self.processor.tokenizer(
            texts, padding="longest", truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        length = tokens["input_ids"].shape[1]
        input_ids = torch.full((len(items), k, length), self.processor.tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(items), k, length), dtype=torch.long)
        row = 0
        for index, negatives in enumerate(drawn):
            input_ids[index, : len(negatives)] = tokens["input_ids"][row : row + len(negatives)]
            attention_mask[index, : len(negatives)] = tokens["attention_mask"][row : row + len(negatives)]
            row += len(negatives)
        return {"negative_input_ids": input_ids, "negative_attention_mask": attention_mask}
