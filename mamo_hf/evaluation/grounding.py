"""Weakly-supervised visual grounding with Grad-CAM, the protocol of ALBEF and MAMO (docs/method.md §5 "Downstream
tasks").

A model fine-tuned with ITC + ITM on referring expressions alone (no boxes) grounds an expression by Grad-CAM: the
gradient of the ITM "match" logit with respect to the attention probabilities of one fusion layer, kept where it is
positive and multiplied by the attention, is averaged over heads and over text queries (the expression's word
pieces by default; every text token, as ALBEF; or the multimodal [CLS] alone) at the image patches (keys). The heat
map, upsampled to the image, scores each proposal box by the heat inside it divided by the square root of its area,
and the best box is the prediction. Accuracy counts predictions that are
the ground-truth proposal (or overlap the ground-truth box with IoU ≥ 0.5, as in RefCOCO+), next to the accuracy of
choosing a proposal at random.

ALBEF takes the maps from the cross-attention of text to image in its 3rd of 6 fusion layers; MAMO's fusion uses
merged attention, whose probabilities `[batch, heads, length, length]` over `[text tokens ; image [CLS] ; patches]`
hold the same text-to-image block. Which layer and queries carry the map depends on the model: in the tiny 2-layer
model of `examples/grounding.py`, the [CLS] query of the last layer grounds most expressions and the word pieces of
layer 0 do no better than chance (see that example).
"""

import math
from collections import defaultdict
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from ..data.grounding import Box, GroundingSample
from ..data.records import load_image

IOU_THRESHOLD = 0.5
_PREDICTED_COLOUR, _GROUND_TRUTH_COLOUR, _PROPOSAL_COLOUR = (0, 200, 255), (40, 230, 40), (200, 200, 200)


# ---------------------------------------------------------------------------------------------------------------
# Grad-CAM
# ---------------------------------------------------------------------------------------------------------------


def default_gradcam_layer(num_fusion_layers: int) -> int:
    """The fusion layer Grad-CAM reads by default: `(num_fusion_layers - 1) // 2`, the middle layer rounded down.

    For the 6 fusion layers of `mamo-base` that is layer 2 (the 3rd), where ALBEF reads its maps (`block_num=8`
    of BERT's 12 layers, the 3rd of its 6 fusion layers): deep enough that the image has been read in the light of
    the text, early enough that patch tokens still stand for their own place. Never the last layer: there only the
    [CLS] query reaches the ITM head, so the word pieces' attention has no gradient (for 2 layers, layer 0).
    """
    return (num_fusion_layers - 1) // 2


def query_mask(input_ids: torch.Tensor, attention_mask: torch.Tensor, text_config, queries: str = "words"):
    """The text positions whose attention Grad-CAM averages, `[batch, length]` booleans.

    `queries`: "words", the word pieces (not [CLS], [SEP] or padding); "text", every real text token ([CLS], word
    pieces and [SEP], as ALBEF averages); "cls", the multimodal [CLS] alone (whose state the ITM head reads).
    """
    if queries == "cls":
        return torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids) == 0
    if queries == "text":
        return attention_mask.bool()
    if queries == "words":
        special = [text_config.cls_token_id, text_config.sep_token_id, text_config.pad_token_id]
        special = torch.tensor([token for token in special if token is not None], device=input_ids.device)
        return attention_mask.bool() & ~torch.isin(input_ids, special)
    raise ValueError(f"queries must be 'words', 'text' or 'cls', got {queries!r}.")


@contextmanager
def _gradcam_mode(model):
    """Eval mode and eager attention in the fusion encoder (whose kernel returns the probabilities); both restored
    on exit."""
    fusion_encoder = model.mamo.fusion_encoder
    attention, training = fusion_encoder.config._attn_implementation, model.training
    model.eval()
    fusion_encoder.set_attn_implementation("eager")
    try:
        yield
    finally:
        fusion_encoder.set_attn_implementation(attention)
        model.train(training)


def gradcam_heatmaps(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    pixel_values: torch.Tensor,
    layer: int | None = None,
    queries: str = "words",
) -> torch.Tensor:
    r"""Grad-CAM heat maps of the ITM match score over the image patches, for a batch of (image, expression) pairs.

    With `A` the attention probabilities of fusion layer `layer` `[batch, heads, L, L]` and `s = Σ_batch
    itm_logits[:, 1]`, the map of pair `b` at patch `p` is

        `heat[b, p] = mean_{h} mean_{q ∈ Q(b)} relu(∂s/∂A[b, h, q, k_p]) · A[b, h, q, k_p]`,

    over the heads `h` and the query positions `Q(b)` of the text (by default its word pieces, not [CLS], [SEP] or
    padding; see `query_mask`), where `k_p` is the fusion position of patch `p`. Pairs do not interact, so one
    backward pass gives every pair's map.

    The model is switched to eval mode and to eager attention in the fusion encoder for the call and restored after;
    parameters' `.grad` are not touched (the gradient is taken with `torch.autograd.grad`).

    Args:
        model: a `MamoForImageTextRetrieval` (or any model with `.mamo` and `.itm_head`, e.g. `MamoForPreTraining`).
        input_ids (`torch.LongTensor` of shape `[batch, length]`), attention_mask (`torch.Tensor` of shape
            `[batch, length]`), pixel_values (`torch.FloatTensor` of shape `[batch, channels, height, width]`):
            the pairs, from `MamoProcessor`.
        layer (`int`, *optional*): fusion layer to read (default `default_gradcam_layer`).
        queries (`str`): "words" (default), "text" or "cls": which text positions' attention is averaged
            (`query_mask`). In the last layer only [CLS] reaches the ITM head, so "words" needs an earlier layer.

    Returns:
        `torch.FloatTensor` of shape `[batch, grid_height, grid_width]`: non-negative heat per patch.

    Raises:
        ValueError: for a layer out of range, the last layer with `queries="words"`, or unknown `queries`.
    """
    if not (hasattr(model, "mamo") and hasattr(model, "itm_head")):
        raise TypeError(
            f"Grad-CAM follows the ITM match score, which {type(model).__name__} has no head for: pass a "
            "MamoForImageTextRetrieval (or MamoForPreTraining), e.g. MamoForImageTextRetrieval.from_pretrained(path)."
        )
    base = model.mamo
    num_layers = len(base.fusion_encoder.layers)
    layer = default_gradcam_layer(num_layers) if layer is None else layer
    if not 0 <= layer < num_layers:
        raise ValueError(f"The fusion encoder has layers 0..{num_layers - 1}, got layer {layer}.")
    if queries == "words" and layer == num_layers - 1:
        raise ValueError(
            f"Layer {layer} is the last layer, whose word-piece queries do not reach the ITM head (only [CLS] does): "
            "their gradient is zero. Read an earlier layer, or pass queries='cls' or 'text'."
        )
    mask = query_mask(input_ids, attention_mask, base.config.text_config, queries).float()
    grid = base.image_encoder.embeddings.grid_for(*pixel_values.shape[-2:])
    with _gradcam_mode(model):
        with torch.no_grad():
            image_states = base.get_image_features(pixel_values).last_hidden_state
            text_states = base.get_text_features(input_ids, attention_mask=attention_mask).last_hidden_state
        with torch.enable_grad():
            fused = base.fuse(
                text_states.requires_grad_(), attention_mask, image_states.requires_grad_(), output_attentions=True
            )
            attention = fused.attentions[layer]
            match = model.itm_head(fused.last_hidden_state[:, 0])[:, 1].sum()
            (gradient,) = torch.autograd.grad(match, attention)
    cam = (gradient.clamp(min=0) * attention.detach()).float().mean(dim=1)  # [batch, L, L]
    text_length = input_ids.shape[1]
    text_to_patches = cam[:, :text_length, text_length + 1 :]  # text queries × patch keys ([CLS] of the image skipped)
    weights = mask / mask.sum(dim=1, keepdim=True).clamp(min=1)
    return torch.einsum("bq,bqk->bk", weights, text_to_patches).reshape(-1, *grid)


# ---------------------------------------------------------------------------------------------------------------
# Boxes
# ---------------------------------------------------------------------------------------------------------------


def upsample_heatmap(heatmap: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """A `[grid_height, grid_width]` heat map resized bilinearly to an image of `image_size = (width, height)`
    pixels (PIL's `Image.size`): `[height, width]`, float64."""
    width, height = image_size
    resized = F.interpolate(heatmap[None, None].double(), size=(height, width), mode="bilinear", align_corners=False)
    return resized[0, 0]


def box_scores(heatmap: torch.Tensor, boxes: Sequence[Box], image_size: tuple[int, int]) -> torch.Tensor:
    r"""Score proposal boxes by the heat inside them (ALBEF's ranking of detections).

    The heat map is upsampled bilinearly to the image (`upsample_heatmap`), and box `(x, y, w, h)` scores

        `score = Σ_{rows ⌊y⌋..⌊y+h⌋-1, columns ⌊x⌋..⌊x+w⌋-1} heat / √(w · h)`

    (the region clipped to the image; sums from an integral image). Dividing by the square root of the area, not
    the area, balances large boxes, which collect more heat, and small ones, which have more heat per pixel. Boxes of
    zero area score `-inf`.

    Args:
        heatmap (`torch.Tensor` of shape `[grid_height, grid_width]`): one heat map.
        boxes: proposals `(x, y, w, h)` in pixels.
        image_size (`(width, height)`): the image's size in pixels.

    Returns:
        `torch.DoubleTensor` of shape `[num_boxes]`.
    """
    width, height = image_size
    heat = upsample_heatmap(heatmap, image_size)
    integral = F.pad(heat.cumsum(0).cumsum(1), (1, 0, 1, 0))  # integral[r, c] = Σ heat[:r, :c]
    boxes = torch.as_tensor(boxes, dtype=torch.float64).reshape(-1, 4)
    left, top = boxes[:, 0].long().clamp(0, width), boxes[:, 1].long().clamp(0, height)
    right = (boxes[:, 0] + boxes[:, 2]).long().clamp(0, width)
    bottom = (boxes[:, 1] + boxes[:, 3]).long().clamp(0, height)
    inside = integral[bottom, right] - integral[top, right] - integral[bottom, left] + integral[top, left]
    area = boxes[:, 2] * boxes[:, 3]
    return torch.where(area > 0, inside / area.clamp(min=1e-12).sqrt(), -math.inf)


def rank_boxes(heatmap: torch.Tensor, boxes: Sequence[Box], image_size: tuple[int, int]) -> int:
    """The index of the best proposal by `box_scores` (the first one on a tie)."""
    return int(box_scores(heatmap, boxes, image_size).argmax())


def box_iou(box: Box, other: Box) -> float:
    """Intersection over union of two boxes `(x, y, w, h)`: `|A ∩ B| / (|A| + |B| − |A ∩ B|)` (0 when both are
    empty). Coordinates are continuous (ALBEF's `computeIoU` counts inclusive pixels, which differs by under a pixel
    per side)."""
    overlap_width = max(0.0, min(box[0] + box[2], other[0] + other[2]) - max(box[0], other[0]))
    overlap_height = max(0.0, min(box[1] + box[3], other[1] + other[3]) - max(box[1], other[1]))
    intersection = overlap_width * overlap_height
    union = box[2] * box[3] + other[2] * other[3] - intersection
    return intersection / union if union > 0 else 0.0


def correct_proposals(sample: GroundingSample, iou_threshold: float = IOU_THRESHOLD) -> list[bool]:
    """Which proposals of a sample count as right: the `target_index` one, or those whose IoU with `target_box`
    is at least `iou_threshold`."""
    if sample.target_index is not None:
        return [index == sample.target_index for index in range(len(sample.boxes))]
    return [box_iou(box, sample.target_box) >= iou_threshold for box in sample.boxes]


def random_box_accuracy(samples: Sequence[GroundingSample], iou_threshold: float = IOU_THRESHOLD) -> float:
    """Expected accuracy in % of choosing one proposal uniformly at random, exactly: `100 · mean_samples
    (right proposals / proposals)`."""
    chances = [sum(right) / len(right) for right in (correct_proposals(s, iou_threshold) for s in samples)]
    return 100.0 * sum(chances) / len(chances)


# ---------------------------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------------------------


def _accuracies(hits: list[bool], samples: list[GroundingSample], iou_threshold: float) -> dict:
    return {
        "accuracy": 100.0 * sum(hits) / len(hits),
        "random_baseline": random_box_accuracy(samples, iou_threshold),
        "num_samples": len(hits),
    }


def grounding_accuracy(
    model,
    processor,
    samples: Sequence[GroundingSample],
    batch_size: int = 32,
    layer: int | None = None,
    queries: str = "words",
    max_length: int = 40,
    iou_threshold: float = IOU_THRESHOLD,
) -> dict:
    """Ground every sample's expression by Grad-CAM (`gradcam_heatmaps`, `rank_boxes`) and score the predictions.

    Args:
        model: a `MamoForImageTextRetrieval` fine-tuned with ITC + ITM on expressions.
        processor: a `MamoProcessor` (images are resized to the model's size; heat maps are mapped back to each
            image's own size, where the boxes are).
        samples: `GroundingSample`s (`mamo_hf.data.grounding`).
        batch_size: pairs per Grad-CAM pass.
        layer: fusion layer of the heat maps (default `default_gradcam_layer`).
        queries: text positions whose attention the heat maps average ("words", "text" or "cls"; `query_mask`).
        max_length: token limit of the expressions.
        iou_threshold: IoU at which a proposal matches a `target_box`.

    Returns:
        `dict` with `accuracy` and `random_baseline` (in %, the expected accuracy of a uniformly random proposal,
        computed exactly), `num_samples`, `splits` (the same three per `sample.split`, for the samples that have
        one) and `predictions` (the chosen proposal index of each sample).
    """
    if not samples:
        raise ValueError("grounding_accuracy needs at least one sample.")
    parameter = next(model.parameters())
    predictions, hits = [], []
    for start in range(0, len(samples), batch_size):
        batch = samples[start : start + batch_size]
        images = [load_image(sample.image) for sample in batch]
        inputs = processor(
            images=images,
            text=[sample.text for sample in batch],
            padding="longest",
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        ).to(parameter.device)
        heatmaps = gradcam_heatmaps(
            model,
            inputs["input_ids"],
            inputs["attention_mask"],
            inputs["pixel_values"].to(parameter.dtype),
            layer,
            queries,
        ).cpu()
        for sample, image, heatmap in zip(batch, images, heatmaps):
            predicted = rank_boxes(heatmap, sample.boxes, image.size)
            predictions.append(predicted)
            hits.append(correct_proposals(sample, iou_threshold)[predicted])
    by_split = defaultdict(list)
    for index, sample in enumerate(samples):
        if sample.split is not None:
            by_split[sample.split].append(index)
    splits = {
        split: _accuracies([hits[i] for i in indices], [samples[i] for i in indices], iou_threshold)
        for split, indices in by_split.items()
    }
    return {**_accuracies(hits, list(samples), iou_threshold), "splits": splits, "predictions": predictions}


def readout_variants(num_fusion_layers: int) -> list[tuple[int, str]]:
    """Every (layer, queries) a Grad-CAM map can be read from (word pieces not in the last layer)."""
    return [
        (layer, queries)
        for layer in range(num_fusion_layers)
        for queries in ("words", "text", "cls")
        if not (queries == "words" and layer == num_fusion_layers - 1)
    ]


def readout_sweep(model, processor, samples: Sequence[GroundingSample], **kwargs) -> dict[tuple[int, str], float]:
    """The grounding accuracy (%) of every read-out of `readout_variants` on `samples`, to select one on validation
    samples (`max(sweep, key=sweep.get)`: the first best). `kwargs` go to `grounding_accuracy`."""
    sweep = {}
    for layer, queries in readout_variants(len(model.mamo.fusion_encoder.layers)):
        metrics = grounding_accuracy(model, processor, samples, layer=layer, queries=queries, **kwargs)
        sweep[layer, queries] = metrics["accuracy"]
    return sweep


# ---------------------------------------------------------------------------------------------------------------
# Overlays
# ---------------------------------------------------------------------------------------------------------------


def _heat_colours(heat: torch.Tensor) -> Image.Image:
    """A "hot" colour map of heat in [0, 1] `[H, W]`: black → red → yellow → white."""
    channels = [(3 * heat - offset).clamp(0, 1) for offset in (0, 1, 2)]
    return Image.fromarray((torch.stack(channels, dim=-1) * 255).byte().numpy())


def heatmap_overlay(image: Image.Image, heatmap: torch.Tensor) -> Image.Image:
    """The heat map `[grid_height, grid_width]` drawn over an RGB image at the image's size: normalised to its
    maximum, in "hot" colours, with an opacity growing with the heat (up to 60 %)."""
    heat = upsample_heatmap(heatmap, image.size).float()
    heat = heat / heat.max() if heat.max() > 0 else heat
    opacity = Image.fromarray((heat * 0.6 * 255).byte().numpy())
    return Image.composite(_heat_colours(heat), image, opacity)


def enlarged(image: Image.Image, min_side: int = 256) -> Image.Image:
    """`image` enlarged by the smallest integer factor that brings its shorter side to at least `min_side` pixels,
    by nearest neighbour (a 64 px scene shows each pixel as a sharp 4 × 4 block at 256 px); unchanged when it is
    already that large."""
    scale = max(1, math.ceil(min_side / min(image.size)))
    return image if scale == 1 else image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)


def save_overlay(
    image: Image.Image | str,
    heatmap: torch.Tensor,
    boxes: Sequence[Box],
    predicted: int,
    ground_truth: int | Box,
    path,
    min_side: int = 256,
) -> Path:
    """Write a PNG for a person to look at: the heat map (normalised to its maximum, "hot" colours, opacity growing
    with the heat) over the image, every proposal in grey, the ground truth in green and the prediction in blue.

    Args:
        image (`PIL.Image.Image` or path): the image the boxes are in.
        heatmap (`torch.Tensor` of shape `[grid_height, grid_width]`): its heat map.
        boxes: the proposals `(x, y, w, h)`.
        predicted (`int`): index of the predicted proposal.
        ground_truth (`int` or `(x, y, w, h)`): index of the right proposal, or the ground-truth box.
        path: where to write the PNG.
        min_side (`int`): small images are enlarged (nearest neighbour) by an integer factor to at least this side.

    Returns:
        The path written.
    """
    image = load_image(image)
    overlay = enlarged(heatmap_overlay(image, heatmap), min_side)
    scale = overlay.width // image.width
    draw = ImageDraw.Draw(overlay)

    def outline(box: Box, colour: tuple[int, int, int], width: int):
        x, y, w, h = (value * scale for value in box)
        draw.rectangle((x, y, x + w, y + h), outline=colour, width=width)

    for box in boxes:
        outline(box, _PROPOSAL_COLOUR, 1)
    outline(boxes[ground_truth] if isinstance(ground_truth, int) else ground_truth, _GROUND_TRUTH_COLOUR, 5)
    outline(boxes[predicted], _PREDICTED_COLOUR, 2)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    overlay.save(path, format="PNG")
    return path
