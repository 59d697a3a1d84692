"""Weakly-supervised visual grounding end to end on CPU: fine-tune on expressions, ground them with Grad-CAM.

The protocol of ALBEF and MAMO (docs/method.md §5 "Downstream tasks") on the generated grounding set of
`mamo_hf.data.grounding`: scenes of two or three coloured shapes, each object referred to by an expression that names
its shape and, where needed, its colour and/or size ("the red circle", "the large blue square"), never its place. A
tiny `MamoForImageTextRetrieval` (`MamoConfig.tiny`: 2 fusion layers, 48 px images in 6 × 6 patches of 8 px, two
patches a side per cell of the 3 × 3 scene grid) is trained from scratch with ITC + ITM on (scene, expression) pairs
only, no boxes, in batches without false negatives (`UnambiguousBatchSampler`: in this small world an expression of one
scene is often true of another, and ITM does not learn on random batches). Then, on held-out scenes, the Grad-CAM heat
map of the ITM score (`mamo_hf.evaluation.grounding`) ranks the objects' boxes; the accuracy is compared with choosing
a box at random.

Two read-outs are reported on the test scenes: the default one (word-piece queries, middle fusion layer, as
`--layer` and `--queries` say) and the (layer, queries) read-out that does best on separate validation scenes.
`metrics.json` holds both, the validation sweep and the losses; `overlay_*.png` show the heat map of the second
read-out with the predicted box (blue) and the ground truth (green).

    python examples/grounding.py --output_dir outputs/grounding

On 1 CPU thread (3,000 `Trainer` steps, 3.5 minutes in all), seeds 0 and 1: the validation-selected read-out, layer 1
(the last) with text queries ([CLS], word pieces and [SEP]), grounds 92.5% and 90.6% of the test expressions, against
40.4% and 41.0% for a random box; the default read-out, word pieces in layer 0, 36.5% and 45.9%, about chance. In
this 2-layer model the word pieces of layer 0 do not attend to their referents (in a diagnostic run their plain
attention ranked boxes at chance too): the expression is resolved in the last layer, through the [CLS] state the ITM
head reads. ALBEF reads the 3rd of its 6 fusion layers, averaging over every text token, [CLS] included: for
`mamo-base`, layer 2 with `--queries text`.

Full size, RefCOCO+ (the paper's setting): fine-tune a pre-trained MAMO with ITC + ITM on the expressions of
ALBEF's `refcoco+_train.json` (records `{"image", "text", "ref_id"}`; as image-caption pairs with `image_ids` = the
image, e.g. with `examples/finetune_retrieval.py` on the records rewritten as `{"image", "caption"}`; ALBEF: 384 px,
5 epochs, lr 1e-5), then evaluate val, testA and testB with MAttNet's proposals and REFER's ground truth (ALBEF's
data files; see `mamo_hf.data.grounding`):

    python examples/grounding.py --checkpoint path/to/mamo-refcoco+ --output_dir outputs/refcoco+ \
        --refcoco_files data/refcoco+_val.json data/refcoco+_test.json --detections data/refcoco+/dets.json \
        --refs "data/refcoco+/refs(unc).p" --instances data/refcoco+/instances.json --image_root path/to/coco \
        --layer 2 --queries text

which writes the accuracy per split to `metrics.json` (ALBEF's "val_d", "testA_d", "testB_d").

Training takes every `TrainingArguments` flag (`--help` lists them with this example's defaults): by default it logs
to TensorBoard (`<output_dir>/runs`) and keeps a checkpoint every 500 steps; `--resume_from_checkpoint
<output_dir>/checkpoint-N` continues one, `--eval_strategy steps --eval_steps 500` logs the default read-out's
accuracy on the validation scenes during training, `--push_to_hub --hub_model_id you/mamo-grounding` uploads the
model, the processor and the card.
"""

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import DataLoader
from trainer_cli import fail, parse_arguments, reading, write_card_and_push
from transformers import Trainer

from mamo_hf import MamoForImageTextRetrieval, MamoProcessor
from mamo_hf.data import tiny_config_and_processor
from mamo_hf.data.grounding import (
    GroundingCaptionDataset,
    UnambiguousBatchSampler,
    generated_grounding_samples,
    read_refcoco,
    read_refer_targets,
)
from mamo_hf.evaluation.grounding import (
    default_gradcam_layer,
    gradcam_heatmaps,
    grounding_accuracy,
    readout_sweep,
    save_overlay,
)
from mamo_hf.hub import MeasuredResult


@dataclass
class GroundingArguments:
    """The example's own flags; training takes every `TrainingArguments` flag too."""

    image_size: int = field(default=48, metadata={"help": "image side in pixels"})
    patch_size: int = field(default=8, metadata={"help": "patch side in pixels"})
    train_scenes: int = field(default=4000, metadata={"help": "generated training scenes"})
    eval_scenes: int = field(default=300, metadata={"help": "generated validation scenes, and as many test scenes"})
    layer: int | None = field(
        default=None, metadata={"help": "fusion layer of the heat maps (default: the middle one)"}
    )
    queries: Literal["words", "text", "cls"] = field(
        default="words", metadata={"help": "text positions whose attention the heat maps average"}
    )
    overlays: int = field(default=8, metadata={"help": "heat-map overlays written as PNG"})
    checkpoint: str | None = field(
        default=None, metadata={"help": "evaluate this fine-tuned MamoForImageTextRetrieval instead of training"}
    )
    refcoco_files: list[str] | None = field(
        default=None, metadata={"help": "ALBEF's refcoco+_{val,test}.json (with --checkpoint)"}
    )
    detections: str | None = field(default=None, metadata={"help": "ALBEF's refcoco+/dets.json"})
    refs: str | None = field(default=None, metadata={"help": "REFER's refcoco+/refs(unc).p"})
    instances: str | None = field(default=None, metadata={"help": "REFER's refcoco+/instances.json"})
    image_root: str | None = field(default=None, metadata={"help": "folder the RefCOCO+ image paths are relative to"})


def refcoco_needs_checkpoint(args: GroundingArguments) -> str | None:
    """RefCOCO+ files are evaluated with a fine-tuned `--checkpoint` (without one they would be ignored), and a
    `--checkpoint` is evaluated on RefCOCO+: it needs `--refcoco_files` and `--detections`."""
    given = [name for name in ("refcoco_files", "detections", "refs", "instances") if getattr(args, name)]
    if given and not args.checkpoint:
        return f"--{given[0]} is evaluated with a fine-tuned model: add --checkpoint (the model to evaluate)."
    missing = [name for name in ("refcoco_files", "detections") if not getattr(args, name)]
    if args.checkpoint and missing:
        return f"--checkpoint is evaluated on RefCOCO+: add --{missing[0]} (ALBEF's {FILES_OF[missing[0]]})."
    return None


FILES_OF = {"refcoco_files": "refcoco+_{val,test}.json", "detections": "refcoco+/dets.json"}


def layer_problem(layer: int | None, model: MamoForImageTextRetrieval) -> str | None:
    """A `--layer` that the model's fusion encoder does not have."""
    num_layers = len(model.mamo.fusion_encoder.layers)
    if layer is not None and layer >= num_layers:
        return f"--layer {layer}: the model has {num_layers} fusion layers, numbered 0 to {num_layers - 1}."
    return None


# The example's choices for `TrainingArguments` (the run documented above). Batches are drawn, not epochs of a
# dataset: training is `max_steps` long and saves every `save_steps`.
TRAINING_DEFAULTS = {
    "output_dir": "outputs/grounding",
    "max_steps": 3000,
    "per_device_train_batch_size": 32,
    "learning_rate": 1e-3,
    "lr_scheduler_type": "cosine",
    "warmup_steps": 100,
    "weight_decay": 0.02,
    "logging_steps": 50,
    "save_strategy": "steps",
    "save_steps": 500,
}


def tiny_model_and_processor(image_size: int, patch_size: int) -> tuple[MamoForImageTextRetrieval, MamoProcessor]:
    """A tiny MAMO for image-text matching over the demo vocabulary, from scratch."""
    config, processor = tiny_config_and_processor(image_size, patch_size)
    return MamoForImageTextRetrieval(config), processor


class EncodedPairs(torch.utils.data.Dataset):
    """Every (scene, expression) pair of a `GroundingCaptionDataset` as model inputs, encoded once, with
    `image_ids` = the scene index (expressions of one scene are positives of its image)."""

    def __init__(self, processor: MamoProcessor, dataset: GroundingCaptionDataset):
        items = [dataset[index] for index in range(len(dataset))]
        inputs = processor(
            images=[item["image"] for item in items],
            text=[item["caption"] for item in items],
            padding="longest",
            return_tensors="pt",
        )
        self.inputs = {**inputs, "image_ids": torch.tensor([item["image_id"] for item in items])}

    def __len__(self) -> int:
        return len(self.inputs["image_ids"])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {name: values[index] for name, values in self.inputs.items()}


class GroundingTrainer(Trainer):
    """`Trainer` whose training batches come from a batch sampler (`UnambiguousBatchSampler`: no false negatives in
    a batch) instead of random batches of a fixed size, and whose evaluation is the grounding accuracy of one
    Grad-CAM read-out (`readout`: layer and queries) on its `eval_dataset` of `GroundingSample`s, so that
    `--eval_strategy` logs it."""

    def __init__(self, *args, batch_sampler: UnambiguousBatchSampler, readout: tuple[int, str], **kwargs):
        super().__init__(*args, **kwargs)
        self.batch_sampler, self.readout = batch_sampler, readout

    def get_train_dataloader(self) -> DataLoader:
        loader = DataLoader(self.train_dataset, batch_sampler=self.batch_sampler, collate_fn=self.data_collator)
        return self.accelerator.prepare(loader)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict:
        layer, queries = self.readout
        samples = eval_dataset or self.eval_dataset
        result = grounding_accuracy(self.model, self.processing_class, samples, layer=layer, queries=queries)
        metrics = {f"{metric_key_prefix}_{name}": result[name] for name in ("accuracy", "random_baseline")}
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics


def fine_tune(model, processor, args: GroundingArguments, training_args, validation: list) -> GroundingTrainer:
    """ITC + ITM with hard negatives on the expressions with `Trainer` (the model computes its loss in training
    mode), in batches without false negatives; AdamW, linear warm-up, cosine decay."""
    dataset = GroundingCaptionDataset(args.train_scenes, training_args.seed, args.image_size)
    print(f"{len(dataset)} training pairs from {args.train_scenes} scenes", flush=True)
    batches = training_args.max_steps * training_args.gradient_accumulation_steps
    sampler = UnambiguousBatchSampler(dataset, training_args.per_device_train_batch_size, batches, training_args.seed)
    num_layers = len(model.mamo.fusion_encoder.layers)
    trainer = GroundingTrainer(
        model=model,
        args=training_args,
        train_dataset=EncodedPairs(processor, dataset),
        eval_dataset=validation,
        processing_class=processor,
        batch_sampler=sampler,
        readout=(default_gradcam_layer(num_layers) if args.layer is None else args.layer, args.queries),
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    return trainer


def accuracy_line(metrics: dict) -> str:
    """ "84.3% (random 41.0%, 732 expressions)"."""
    return (
        f"{metrics['accuracy']:.1f}% (random {metrics['random_baseline']:.1f}%, {metrics['num_samples']} expressions)"
    )


def evaluate_generated(model, processor, args: GroundingArguments, validation: list, seed: int) -> dict:
    """The default read-out (word pieces, middle layer) on held-out test scenes; every (layer, queries) read-out on
    the `validation` scenes, and the best of them on the test scenes."""
    num_layers = len(model.mamo.fusion_encoder.layers)
    test = generated_grounding_samples(args.eval_scenes, seed=seed + 2, image_size=args.image_size)
    default = (default_gradcam_layer(num_layers) if args.layer is None else args.layer, args.queries)
    sweep = readout_sweep(model, processor, validation)
    best = max(sweep, key=sweep.get)
    results = {"default": (default, grounding_accuracy(model, processor, test, layer=default[0], queries=default[1]))}
    results["best_on_validation"] = (best, grounding_accuracy(model, processor, test, layer=best[0], queries=best[1]))
    for name, ((layer, queries), metrics) in results.items():
        print(f"test, {name} read-out (layer {layer}, {queries}): {accuracy_line(metrics)}")
    return {
        "test": {
            name: {"layer": layer, "queries": queries, **metrics}
            for name, ((layer, queries), metrics) in results.items()
        },
        "validation_sweep": [
            {"layer": layer, "queries": queries, "accuracy": accuracy} for (layer, queries), accuracy in sweep.items()
        ],
        "samples": test,
    }


def evaluate_refcoco(model, processor, args) -> dict:
    """Grounding accuracy on RefCOCO+ (per split) with the read-out of `--layer` and `--queries`."""
    with reading("--refcoco_files/--detections/--refs/--instances"):
        targets = read_refer_targets(args.refs, args.instances) if args.refs else None
        samples = read_refcoco(args.refcoco_files, args.detections, image_root=args.image_root, targets=targets)
    layer = default_gradcam_layer(len(model.mamo.fusion_encoder.layers)) if args.layer is None else args.layer
    metrics = grounding_accuracy(model, processor, samples, layer=layer, queries=args.queries)
    for split, split_metrics in metrics["splits"].items():
        print(f"{split}: {accuracy_line(split_metrics)}")
    return {"test": {"default": {"layer": layer, "queries": args.queries, **metrics}}, "samples": samples}


def write_overlays(model, processor, samples, readout: dict, output_dir: Path, count: int) -> list[str]:
    """Overlays of the first `count` samples with the heat maps of `readout` (its layer, queries, predictions)."""
    samples = samples[:count]
    inputs = processor(
        images=[sample.image for sample in samples],
        text=[sample.text for sample in samples],
        padding="longest",
        return_tensors="pt",
    )
    heatmaps = gradcam_heatmaps(
        model,
        inputs["input_ids"],
        inputs["attention_mask"],
        inputs["pixel_values"],
        readout["layer"],
        readout["queries"],
    )
    paths = []
    for index, (sample, heatmap) in enumerate(zip(samples, heatmaps)):
        ground_truth = sample.target_index if sample.target_index is not None else sample.target_box
        path = output_dir / f"overlay_{index:02d}_{sample.text.replace(' ', '_')}.png"
        save_overlay(sample.image, heatmap, sample.boxes, readout["predictions"][index], ground_truth, path)
        paths.append(str(path))
    return paths


def save_and_describe(trainer: GroundingTrainer, summary: dict, args: GroundingArguments) -> None:
    """Save the fine-tuned model and processor with a model card of the measured accuracies (and push them with
    `--push_to_hub`)."""
    trainer.save_model()
    trainer.save_state()
    results = [
        MeasuredResult(
            "visual-grounding",
            "held-out generated scenes",
            "accuracy",
            readout["accuracy"],
            name=f"accuracy ({name} read-out)",
        )
        for name, readout in summary["test"].items()
    ]
    write_card_and_push(
        trainer,
        model_name=Path(trainer.args.output_dir).name,
        summary="MAMO fine-tuned with ITC + ITM on referring expressions (no boxes) for weakly-supervised grounding "
        "by Grad-CAM, with `examples/grounding.py`.",
        results=results,
        datasets=["mamo_hf generated grounding scenes"],
        training={
            "steps": trainer.state.global_step,
            "learning_rate": trainer.args.learning_rate,
            "batch_size_per_device": trainer.args.per_device_train_batch_size,
            "image_size": args.image_size,
            "seconds": summary["seconds"],
        },
    )


def main() -> None:
    args, training_args = parse_arguments(
        GroundingArguments, __doc__, TRAINING_DEFAULTS, check=refcoco_needs_checkpoint
    )
    if not args.checkpoint and training_args.max_steps <= 0:
        fail("--max_steps must be >= 1: grounding.py draws its batches rather than going through epochs of a dataset.")
    torch.set_num_threads(1)  # leave the other core to whoever shares the machine
    seed = training_args.seed
    torch.manual_seed(seed)
    if args.checkpoint:
        model = MamoForImageTextRetrieval.from_pretrained(args.checkpoint)
        processor = MamoProcessor.from_pretrained(args.checkpoint)
    else:
        model, processor = tiny_model_and_processor(args.image_size, args.patch_size)
    if problem := layer_problem(args.layer, model):
        fail(problem)
    output_dir = Path(training_args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    start = time.time()
    trainer = None
    if args.checkpoint:
        losses, results = [], evaluate_refcoco(model, processor, args)
    else:
        validation = generated_grounding_samples(args.eval_scenes, seed=seed + 1, image_size=args.image_size)
        trainer = fine_tune(model, processor, args, training_args, validation)
        losses = [(entry["step"], entry["loss"]) for entry in trainer.state.log_history if "loss" in entry]
        results = evaluate_generated(model, processor, args, validation, seed)
    shown = results["test"].get("best_on_validation", results["test"]["default"])
    overlays = write_overlays(model, processor, results.pop("samples"), shown, output_dir, args.overlays)
    for readout in results["test"].values():
        readout.pop("predictions")
    summary = {**results, "losses": losses, "seconds": round(time.time() - start), "overlays": overlays}
    summary.update(arguments=asdict(args), training_arguments=training_args.to_dict())
    if trainer is None or trainer.is_world_process_zero():
        (output_dir / "metrics.json").write_text(json.dumps(summary, indent=1) + "\n")
    if trainer is not None:
        save_and_describe(trainer, summary, args)
    print(f"{summary['seconds']} s; wrote {output_dir / 'metrics.json'} and {len(overlays)} overlays")


if __name__ == "__main__":
    main()
