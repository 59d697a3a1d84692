"""Score a pre-trained MAMO where masked modeling should pay (issue 28): patch features, grounding, tuned retrieval.

    python benchmarks/masked_modeling_probes.py score MODEL_FOLDER [--seed S] [--output FILE.json]

MODEL_FOLDER is what `mamo-hf pretrain` / `mamo-hf demo` writes (`MamoForPreTraining` + `MamoProcessor`; the
instruments are sized for the tiny demo model, 64 px in 4 × 4 patches). Three instruments, on one thread;
`score_checkpoint(folder, seed)` runs them from another script:

1. **Dense probe** (`mamo_hf.evaluation.dense_probe`): the frozen image encoder's patch states, a linear probe per task
   (background / object colour, 7 classes; background / object shape, 5 classes; labels from the generator's
   geometry, `mamo_hf.data.dense`), fitted on demo training scenes and scored on scenes of the configurations reserved
   for evaluation: mIoU and patch accuracy per task, next to the accuracy of always answering background.
2. **Grounding** (docs/method.md §5 "Downstream tasks"): a copy of the checkpoint gets the fine-tune
`GROUNDING_FINE_TUNE` (ITC + ITM
   with hard negatives; the learning rate of `examples/grounding.py`, two thirds of its steps) on the referring
   expressions of generated grounding scenes (`mamo_hf.data.grounding`, never a reserved configuration; batches without
   false negatives, `UnambiguousBatchSampler`); then Grad-CAM of the ITM score ranks the objects' boxes in scenes of
   reserved configurations. The read-out (fusion layer and text queries, `readout_variants`) is selected on separate
   validation scenes (reserved too, another seed), as `examples/grounding.py` does, not fixed in advance: on the demo
   checkpoints the best read-out changed between models and between fine-tune seeds of one model (layer 0 with text
   or [CLS] queries, or the last layer), so one fixed read-out would have scored the read-out as much as the model.
   The test accuracy of every read-out is in the output too. Accuracy next to the random-box baseline.
3. **Fine-tuned retrieval** (the paper's Table 6 metric): another copy gets `RETRIEVAL_FINE_TUNE` (ITC + ITM; the
   steps, peak learning rate and warm-up of `benchmarks/binding.py`'s E1 fine-tune, no augmentation) on demo scenes
   with two captions each (`demo_retrieval_split`), then TR / IR R@1 by ITC and after ITM re-ranking of the top
   `retrieval_k`, on images of reserved configurations; the zero-shot recalls before the fine-tune are reported too.

**Disjoint by construction.** Every test scene (dense, grounding, retrieval) is of a configuration reserved for
evaluation (`mamo_hf.data.reserved.is_evaluation_scene`: its first two objects form a pair reserved up to attribute
swaps and the horizontal mirror), which no training generator produces, not even as two of a scene's objects: not the
demo pre-training data (`DemoCaptionDataset`, minimal pairs included), not the dense probe's fit scenes (`demo_scene`),
not the fine-tunes' scenes (`reserved=False` grounding scenes, `demo_scene` retrieval images). So no test image, nor
any image showing the same objects in the same cells, is ever seen before scoring, whatever the seeds. (The grounding
validation scenes, used only to pick the read-out, are reserved scenes of another seed: other scenes than the test
ones, but not other configurations by construction.)

**Identical treatment.** Every scene set is fixed (`Settings.scene_seed`, `Settings.test_seed`), the same for every
checkpoint and seed; `--seed` sets the fine-tunes' data order and hard-negative draws, so that the arms of one seed get
exactly the same fine-tunes. The checkpoint folder is only read: the fine-tunes change models in memory.

**Sample sizes** (`Settings`) and the binomial standard errors they give (in the output next to each accuracy; they
count test sampling only, treat correlated items as independent, and leave out the fine-tune's own variation between
seeds): dense probe 400 fit and 400 test scenes (6,400 test patches: ± 0.5 points at 85 %); grounding 400 test scenes
(about 1,000 expressions: ± 1.6 points at 60 %), 200 validation scenes; retrieval 500 test images and 1,000 captions
(TR R@1 ± 2.1, IR R@1 ± 1.5 points at 35 %). One checkpoint takes about 130 s on one thread of this project's CPU
(dense probe 2–7 s, grounding 85–95 s, retrieval 35–45 s; measured on the tiny 64 px demo model with nothing else
running on the core).

**Sanity check** (`benchmarks/results/masked_modeling_probes_sanity.jsonl`; one pre-training seed, short runs,
`--seed 0`): an untrained model against `mamo-hf demo` models of 300 and 1,500 steps, ITC+ITM+MLM and all five
objectives. Fine-tuned retrieval separates them clearly (ITC TR R@1 13.0 untrained, 34–35 after 300 steps, 78–79
after 1,500), and so does the colour probe (mIoU 88.3 untrained, 94.3–95.9 trained). The shape probe does not
(47.8–50.5 for all: a 16 px patch holds a fragment of a shape, and the untrained encoder's patch states, near a random
projection of the pixels, tell it as well as the trained ones), nor does grounding: 2,000 steps of fine-tuning teach a
model from scratch to ground as well as the pre-trained ones (over fine-tune seeds 0–2: untrained 58.3 / 71.2 / 68.0,
ITC+ITM+MLM 300 steps 50.9 / 55.5 / 55.8, all objectives 300 steps 66.3 / 70.2 / 65.7), and the fine-tune seed alone
moves its accuracy (standard deviation 2.4–6.7 points over those 3 seeds), well above its binomial standard error:
compare arms on paired seeds, and read grounding differences against that spread.
"""

import argparse
import json
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import get_cosine_schedule_with_warmup

from mamo_hf import MamoForImageTextRetrieval, MamoProcessor
from mamo_hf.data.demo import draw_scene
from mamo_hf.data.dense import dense_probe_scenes
from mamo_hf.data.grounding import GroundingCaptionDataset, UnambiguousBatchSampler, generated_grounding_samples
from mamo_hf.data.retrieval import demo_retrieval_split
from mamo_hf.evaluation.dense_probe import dense_probe
from mamo_hf.evaluation.grounding import random_box_accuracy, readout_sweep
from mamo_hf.evaluation.retrieval import evaluate_retrieval


@dataclass(frozen=True)
class FineTune:
    """An ITC + ITM fine-tune: AdamW (weight decay on matrices only), linear warm-up then cosine decay to 0,
    gradient clipping."""

    steps: int
    batch_size: int = 32
    learning_rate: float = 2e-4
    warmup_steps: int = 30
    weight_decay: float = 0.02
    max_grad_norm: float = 5.0


GROUNDING_FINE_TUNE = FineTune(steps=2000, learning_rate=1e-3, warmup_steps=100)
RETRIEVAL_FINE_TUNE = FineTune(steps=300, learning_rate=2e-4, warmup_steps=30)


@dataclass(frozen=True)
class Settings:
    """Everything the scores depend on besides the checkpoint and the seed."""

    scene_seed: int = 0  # the fit / fine-tuning scenes
    test_seed: int = 12345  # the reserved test scenes
    dense_fit_scenes: int = 400
    dense_test_scenes: int = 400
    grounding_train_scenes: int = 2000
    grounding_validation_scenes: int = 200  # select the Grad-CAM read-out
    grounding_test_scenes: int = 400
    grounding_fine_tune: FineTune = field(default=GROUNDING_FINE_TUNE)
    retrieval_train_images: int = 2000
    retrieval_test_images: int = 500
    retrieval_k: int = 16
    retrieval_fine_tune: FineTune = field(default=RETRIEVAL_FINE_TUNE)


def binomial_standard_error(percent: float, count: int) -> float:
    """`√(p (100 − p) / n)`, in points, of a proportion `p` (%) of `n` independent trials."""
    return math.sqrt(percent * (100.0 - percent) / count) if count else float("nan")


@dataclass
class EncodedPairs:
    """Image-text pairs encoded once: pixel values per image, tokens per pair, and each pair's image index (pairs of
    one image are ITC positives of each other)."""

    pixel_values: torch.Tensor  # [images, channels, height, width]
    input_ids: torch.Tensor  # [pairs, length]
    attention_mask: torch.Tensor  # [pairs, length]
    image_ids: torch.Tensor  # [pairs]

    @classmethod
    def encode(cls, processor, images: Sequence, texts: Sequence[str], image_ids: Sequence[int]) -> "EncodedPairs":
        tokens = processor(text=list(texts), padding="longest", truncation=True, return_tensors="pt")
        pixel_values = processor(images=list(images), return_tensors="pt")["pixel_values"]
        return cls(pixel_values, tokens["input_ids"], tokens["attention_mask"], torch.tensor(image_ids))

    def __len__(self) -> int:
        return len(self.image_ids)

    def batch(self, pairs: Sequence[int]) -> dict[str, torch.Tensor]:
        pairs = torch.as_tensor(pairs)
        image_ids = self.image_ids[pairs]
        return {
            "input_ids": self.input_ids[pairs],
            "attention_mask": self.attention_mask[pairs],
            "pixel_values": self.pixel_values[image_ids],
            "image_ids": image_ids,
        }


def shuffled_batches(num_pairs: int, batch_size: int, num_batches: int, seed: int) -> Iterable[torch.Tensor]:
    """`num_batches` batches of `batch_size` pair indices, epoch after epoch of seeded permutations."""
    generator = torch.Generator().manual_seed(seed)
    epochs = -(-num_batches * batch_size // num_pairs)
    order = torch.cat([torch.randperm(num_pairs, generator=generator) for _ in range(epochs)])
    return order[: num_batches * batch_size].view(num_batches, batch_size)


def fine_tune(model, pairs: EncodedPairs, batches: Iterable[Sequence[int]], settings: FineTune, seed: int) -> dict:
    """Fine-tune `model` (a `MamoForImageTextRetrieval`, in place) with its ITC + ITM loss with hard negatives on
    `pairs`, one optimizer step per batch of `batches`, as `settings` say. Deterministic for a seed (the hard
    negatives are drawn from a generator seeded by it). Returns the steps, seconds and the mean loss of the first
    and the last tenth of the steps."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    matrices = [parameter for parameter in model.parameters() if parameter.ndim >= 2]
    others = [parameter for parameter in model.parameters() if parameter.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": matrices, "weight_decay": settings.weight_decay}, {"params": others, "weight_decay": 0.0}],
        lr=settings.learning_rate,
    )
    scheduler = get_cosine_schedule_with_warmup(optimizer, settings.warmup_steps, settings.steps)
    started, losses = time.perf_counter(), []
    model.train()
    for batch in batches:
        loss = model(**pairs.batch(batch), return_loss=True, generator=generator).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    model.eval()
    tenth = max(1, len(losses) // 10)
    return {
        "steps": len(losses),
        "seconds": round(time.perf_counter() - started, 1),
        "first_loss": sum(losses[:tenth]) / tenth,
        "last_loss": sum(losses[-tenth:]) / tenth,
    }


def load(folder) -> tuple[MamoForImageTextRetrieval, MamoProcessor]:
    """A fresh copy of the checkpoint as a retrieval model (ITC and ITM heads), in eval mode, and its processor."""
    return MamoForImageTextRetrieval.from_pretrained(folder).eval(), MamoProcessor.from_pretrained(folder)


def image_size_of(model) -> int:
    return model.config.vision_config.image_size


def score_dense(folder, settings: Settings) -> dict:
    """Instrument 1: the dense probe, with its binomial standard errors of patch accuracy."""
    model, processor = load(folder)
    fit = dense_probe_scenes(settings.dense_fit_scenes, settings.scene_seed, reserved=False)
    test = dense_probe_scenes(settings.dense_test_scenes, settings.test_seed, reserved=True)
    results = dense_probe(model, processor, fit, test)
    for task in ("colour", "shape"):
        results[task]["accuracy_se"] = binomial_standard_error(results[task]["accuracy"], results["test_patches"])
    return results


def score_grounding(folder, settings: Settings, seed: int) -> dict:
    """Instrument 2: fine-tune on expressions of unreserved scenes; select the Grad-CAM read-out on reserved
    validation scenes; ground the expressions of reserved test scenes with it (and, for reference, with every
    read-out)."""
    model, processor = load(folder)
    size, tuning = image_size_of(model), settings.grounding_fine_tune
    train = GroundingCaptionDataset(settings.grounding_train_scenes, settings.scene_seed, size, reserved=False)
    pairs = EncodedPairs.encode(
        processor,
        [draw_scene(scene.objects, size) for scene in train.scenes],
        [train.scenes[scene].expressions[target] for scene, target in train.pairs],
        [scene for scene, _ in train.pairs],
    )
    batches = UnambiguousBatchSampler(train, tuning.batch_size, tuning.steps, seed)
    training = fine_tune(model, pairs, batches, tuning, seed)
    validation_scenes = settings.grounding_validation_scenes
    validation = generated_grounding_samples(validation_scenes, settings.test_seed + 1, size, reserved=True)
    test = generated_grounding_samples(settings.grounding_test_scenes, settings.test_seed, size, reserved=True)
    validation_sweep, test_sweep = readout_sweep(model, processor, validation), readout_sweep(model, processor, test)
    layer, queries = max(validation_sweep, key=validation_sweep.get)
    accuracy = test_sweep[layer, queries]
    return {
        "accuracy": accuracy,
        "accuracy_se": binomial_standard_error(accuracy, len(test)),
        "random_baseline": random_box_accuracy(test),
        "num_samples": len(test),
        "readout": {"layer": layer, "queries": queries},
        "test_scenes": settings.grounding_test_scenes,
        "validation_samples": len(validation),
        "train_pairs": len(pairs),
        "validation_sweep": sweep_rows(validation_sweep),
        "test_sweep": sweep_rows(test_sweep),
        "fine_tune": training,
    }


def sweep_rows(sweep: dict[tuple[int, str], float]) -> list[dict]:
    """A read-out sweep as JSON rows `{"layer", "queries", "accuracy"}`."""
    return [{"layer": layer, "queries": queries, "accuracy": value} for (layer, queries), value in sweep.items()]


def recalls_at_1(metrics: dict, num_images: int, num_texts: int) -> dict:
    """TR / IR R@1 by ITC and ITM with their binomial standard errors, and the full recall dictionaries."""
    summary = {}
    for ranking in ("itc", "itm"):
        for name, count in (("txt_r1", num_images), ("img_r1", num_texts)):
            value = metrics[ranking][name]
            summary[f"{ranking}_{name}"] = value
            summary[f"{ranking}_{name}_se"] = binomial_standard_error(value, count)
    return {**summary, "all": metrics}


def score_retrieval(folder, settings: Settings, seed: int) -> dict:
    """Instrument 3: zero-shot recalls, a fine-tune on demo scenes, recalls again, on reserved scenes."""
    model, processor = load(folder)
    size, tuning = image_size_of(model), settings.retrieval_fine_tune
    test = demo_retrieval_split(settings.retrieval_test_images, settings.test_seed, image_size=size, reserved=True)

    def recalls() -> dict:
        metrics = evaluate_retrieval(
            model, processor, test.images, test.texts, test.image_to_texts, test.text_to_image, k=settings.retrieval_k
        )
        return recalls_at_1(metrics, len(test.images), len(test.texts))

    before = recalls()
    train = demo_retrieval_split(settings.retrieval_train_images, settings.scene_seed, image_size=size)
    pairs = EncodedPairs.encode(processor, train.images, train.texts, train.text_to_image)
    batches = shuffled_batches(len(pairs), tuning.batch_size, tuning.steps, seed)
    training = fine_tune(model, pairs, batches, tuning, seed)
    return {
        "after": recalls(),
        "before": before,
        "test_images": len(test.images),
        "test_texts": len(test.texts),
        "train_pairs": len(pairs),
        "fine_tune": training,
    }


def score_checkpoint(folder, seed: int = 0, settings: Settings = Settings()) -> dict:
    """Run the three instruments on the checkpoint in `folder` (only read): one JSON-able `dict` with every score,
    its standard error, the settings and the seconds each instrument took."""
    seconds, results = {}, {}
    instruments = {
        "dense_probe": lambda: score_dense(folder, settings),
        "grounding": lambda: score_grounding(folder, settings, seed),
        "retrieval": lambda: score_retrieval(folder, settings, seed),
    }
    for name, instrument in instruments.items():
        started = time.perf_counter()
        results[name] = instrument()
        seconds[name] = round(time.perf_counter() - started, 1)
    seconds["total"] = round(sum(seconds.values()), 1)
    return {
        "checkpoint": str(folder),
        "seed": seed,
        **results,
        "seconds": seconds,
        "threads": torch.get_num_threads(),
        "settings": asdict(settings),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    score = commands.add_parser("score", help="run the three instruments on one checkpoint")
    score.add_argument("model_folder", type=Path)
    score.add_argument("--seed", type=int, default=0, help="seed of the fine-tunes' data order and negatives")
    score.add_argument("--output", type=Path, help="write the JSON here (default: print it)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    result = score_checkpoint(args.model_folder, args.seed)
    text = json.dumps(result, indent=1)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n")
    print(text if not args.output else f"{result['seconds']['total']} s; wrote {args.output}")


if __name__ == "__main__":
    main()
