"""A dense (patch-level) linear probe of the image encoder: do its frozen patch states tell what lies in each patch?

The image encoder is frozen; its patch states (the last hidden state without the image [CLS],
`get_image_features(pixel_values).last_hidden_state[:, 1:]`) are the features of one linear classifier per task,
fitted on the patches of one set of scenes and scored on the patches of disjoint ones. On the demo world the tasks
and labels are those of `mamo_hf.data.dense` (per patch: background or the colour of the object covering it;
background or its shape), from the generator's geometry.

**The probe** (`fit_linear_probe`): features standardised with the mean and standard deviation of the fit patches
only, then multinomial logistic regression with an L2 penalty, solved in float64 by full-batch L-BFGS from zero
weights. The objective is strictly convex, so the probe is its unique minimum (up to the solver's tolerance) and the
same for the same inputs: deterministic, with no seed to choose. On the demo model (6,400 fit patches of 64
features) a fit takes 1 to 4 seconds on one thread.

**The scores** (`segmentation_metrics`): over all test patches, per class `IoU_c = |P_c ∩ T_c| / |P_c ∪ T_c|`
(`P_c` the patches predicted `c`, `T_c` those labelled `c`); mIoU is their mean over the classes present in the
labels or the predictions; patch accuracy is the share of patches labelled right. The accuracy of always answering
the most frequent class of the fit patches is reported next to it (background covers most patches).
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..data.demo import SceneObject, draw_scene
from ..data.dense import DEFAULT_MIN_COVERAGE, DENSE_TASKS, patch_labels

DEFAULT_L2 = 1e-3


@dataclass
class LinearProbe:
    """A fitted linear classifier on standardised features: `logits = ((x − mean) / scale) · weight + bias`."""

    mean: torch.Tensor  # [features]
    scale: torch.Tensor  # [features]
    weight: torch.Tensor  # [features, classes]
    bias: torch.Tensor  # [classes]

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """`[n, classes]` logits of `[n, features]` features."""
        return ((features.double() - self.mean) / self.scale) @ self.weight + self.bias

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """`[n]` predicted classes (the first on a tie)."""
        return self.logits(features).argmax(dim=1)


def fit_linear_probe(
    features: torch.Tensor, labels: torch.Tensor, num_classes: int, l2: float = DEFAULT_L2, max_iterations: int = 500
) -> LinearProbe:
    r"""Fit multinomial logistic regression on standardised features by full-batch L-BFGS (see the module docstring).

    With `x̃ = (x − μ) / σ` (`μ`, `σ` per feature over these `N` fit samples; `σ` floored at 1e-6), it minimises

        `L(W, b) = (1/N) Σ_n CE(softmax(W^T x̃_n + b), y_n) + (λ/2) ‖W‖²`

    from `W = 0, b = 0` in float64 (strong-Wolfe line search, at most `max_iterations` iterations).

    Args:
        features (`torch.Tensor` of shape `[N, features]`): the fit samples.
        labels (`torch.LongTensor` of shape `[N]`): their classes, in `[0, num_classes)`.
        num_classes (`int`): number of classes (some may be absent from `labels`).
        l2 (`float`): `λ`, the penalty on the weights (not the biases).
        max_iterations (`int`): L-BFGS iterations at most.
    """
    features = features.double()
    mean, scale = features.mean(dim=0), features.std(dim=0, unbiased=False).clamp(min=1e-6)
    standardised = (features - mean) / scale
    weight = torch.zeros(features.shape[1], num_classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=max_iterations,
        tolerance_grad=1e-9,
        tolerance_change=1e-12,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def objective():
        optimizer.zero_grad()
        loss = F.cross_entropy(standardised @ weight + bias, labels) + 0.5 * l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(objective)
    return LinearProbe(mean, scale, weight.detach(), bias.detach())


def segmentation_metrics(predicted: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict:
    r"""Patch accuracy and mIoU (in %) of predicted classes against labels, over all patches (module docstring).

    `IoU_c = C[c, c] / (Σ_k C[c, k] + Σ_k C[k, c] − C[c, c])` from the confusion matrix `C[label, prediction]`;
    classes absent from both labels and predictions have no IoU and are left out of the mean.

    Returns:
        `dict` with `miou`, `accuracy` and `iou` (per class index, `None` where absent).
    """
    predicted, labels = predicted.flatten(), labels.flatten()
    if predicted.shape != labels.shape or labels.numel() == 0:
        raise ValueError(f"Need as many predictions as labels (and some): got {predicted.numel()}, {labels.numel()}.")
    confusion = torch.bincount(labels * num_classes + predicted, minlength=num_classes**2).view(num_classes, -1)
    intersection = confusion.diag().double()
    union = confusion.sum(dim=0) + confusion.sum(dim=1) - confusion.diag()
    present = union > 0
    iou = intersection / union.clamp(min=1)
    return {
        "miou": 100.0 * float(iou[present].mean()),
        "accuracy": 100.0 * float(intersection.sum()) / labels.numel(),
        "iou": [100.0 * float(value) if here else None for value, here in zip(iou, present)],
    }


@torch.no_grad()
def patch_features(model, processor, images: Sequence, batch_size: int = 64) -> torch.Tensor:
    """The frozen image encoder's patch states of `images`: `[num_images, num_patches, vision_hidden]` (the last
    hidden state without the image [CLS]), in eval mode (the model's mode is restored after).

    Args:
        model: a `MamoModel`, or a model with one as `.mamo` (pre-training, retrieval).
        processor: a `MamoProcessor`.
        images: PIL images (or anything the processor takes).
    """
    base = getattr(model, "mamo", model)
    parameter, training = next(base.parameters()), base.training
    base.eval()
    states = []
    for start in range(0, len(images), batch_size):
        pixel_values = processor(images=list(images[start : start + batch_size]), return_tensors="pt")["pixel_values"]
        image = base.get_image_features(pixel_values.to(parameter.device, parameter.dtype))
        states.append(image.last_hidden_state[:, 1:].float().cpu())
    base.train(training)
    return torch.cat(states)


def _features_and_labels(model, processor, scenes, image_size: int, patch_size: int, min_coverage: float):
    """Patch features `[scenes · patches, hidden]` and the labels `{task: [scenes · patches]}` of scenes."""
    features = patch_features(model, processor, [draw_scene(scene, image_size) for scene in scenes])
    labels = [patch_labels(scene, image_size, patch_size, min_coverage) for scene in scenes]
    flat = {task: torch.stack([scene[task] for scene in labels]).flatten() for task in DENSE_TASKS}
    return features.flatten(0, 1), flat


def dense_probe(
    model,
    processor,
    fit_scenes: Sequence[list[SceneObject]],
    test_scenes: Sequence[list[SceneObject]],
    min_coverage: float = DEFAULT_MIN_COVERAGE,
    l2: float = DEFAULT_L2,
) -> dict:
    """Fit one linear probe per task of `DENSE_TASKS` on the frozen patch states of `fit_scenes` and score it on
    `test_scenes` (which should be disjoint from them: `mamo_hf.data.dense.dense_probe_scenes`).

    Scenes are drawn at the image encoder's `image_size`; labels follow `mamo_hf.data.dense.patch_labels` at its
    `patch_size` with `min_coverage`.

    Returns:
        `{task: {"miou", "accuracy", "iou", "classes", "majority_accuracy"}}` (in %; `majority_accuracy`: always
        the fit patches' most frequent class) and `fit_scenes`, `test_scenes`, `fit_patches`, `test_patches`.
    """
    vision = getattr(model, "mamo", model).config.vision_config
    image_size, patch_size = vision.image_size, vision.patch_size
    fit_features, fit_labels = _features_and_labels(model, processor, fit_scenes, image_size, patch_size, min_coverage)
    test_features, test_labels = _features_and_labels(
        model, processor, test_scenes, image_size, patch_size, min_coverage
    )
    results = {}
    for task, classes in DENSE_TASKS.items():
        probe = fit_linear_probe(fit_features, fit_labels[task], len(classes), l2)
        metrics = segmentation_metrics(probe.predict(test_features), test_labels[task], len(classes))
        majority = torch.bincount(fit_labels[task], minlength=len(classes)).argmax()
        metrics["majority_accuracy"] = 100.0 * float((test_labels[task] == majority).double().mean())
        results[task] = {**metrics, "classes": list(classes)}
    counts = {"fit_scenes": len(fit_scenes), "test_scenes": len(test_scenes)}
    counts.update(fit_patches=len(fit_features), test_patches=len(test_features))
    return {**results, **counts}


__all__ = ["LinearProbe", "dense_probe", "fit_linear_probe", "patch_features", "segmentation_metrics"]
