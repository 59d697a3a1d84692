"""Pre-training data pipeline alone: can the DataLoader feed the training step?

    python benchmarks/data_pipeline.py                                   # demo and small; 0 and 2 workers
    python benchmarks/data_pipeline.py --sizes base --step-pairs-per-second 0.5   # base needs a measured step rate
    python benchmarks/data_pipeline.py --sizes small --workers 4 --step-pairs-per-second 3.2
    python benchmarks/data_pipeline.py --sizes demo --batches 5 --output /tmp/data_pipeline.json   # quick check

Measures the path of `mamo_hf.training.pretrain` from image file to batch, with no model: the dataset comes from
`build_train_dataset(PretrainingArguments(train_file=...), image_size)` (a `CaptionDataset` with `TrainTransform`),
the loader is a `DataLoader` set up as in `_pretrain` (`EpochShuffleSampler`, `PretrainingCollator` over a
`MamoProcessor` with the PIL image backend, `drop_last=True`, a seeded generator). Per item: read the file, decode
it to RGB, random resized crop and flip, then per batch: resize/rescale/normalise, tokenise, collate.

Sizes (`--sizes`), each with its own source images, written once into a temporary folder with a caption JSON:

    demo   64 px training resolution; 64 × 64 PNGs from `write_demo_dataset` (what `mamo-hf demo` trains on)
    small  128 px; 500 × 375 JPEGs (quality 90, ~60 KB): demo scenes drawn large, squeezed to 4:3, with Gaussian
           pixel noise (std 12) so that they compress and decode like photos of the web; fixed seed
    base   256 px; the same JPEGs

Captions are the demo captions (10 to 30 words) and the tokenizer is `demo_tokenizer()` for every size: a real
`BertTokenizer` (the Rust WordPiece of transformers v5) over the package's small vocabulary. Its cost per word
hardly depends on the vocabulary size, so it stands for the 30,522-word BERT vocabulary of small and base.

Reported per size:

1. Loader throughput with 0 workers (in the main process: the rate of one worker), with `PretrainingArguments`'s
   default number of workers (2) and with `--workers N`: after a warm-up of one batch per worker (worker start-up),
   `--batches` batches are timed; pairs/s = pairs / total time. The median batch time is the median interval between
   consecutive batches; with workers, batches arrive in bursts (the workers run in step), so pairs/s is the number
   to read there.
2. The split of one item's time, measured in the main process on `--sample-items` items: decode (`read_image`:
   open, read, decode, RGB), augment (`TrainTransform`), collate (`PretrainingCollator` per batch, divided by its
   pairs), and within collate the tokenisation alone (the processor on the captions).
3. The ratio to the pairs/s a training step consumes: `--step-pairs-per-second X` (one size at a time), else
   `STEP_PAIRS_PER_SECOND` below (measured for demo and small). The target is a pipeline at least
   `TARGET_RATIO` (3×) as fast as the step; "workers for 3×" assumes the workers scale linearly, i.e. one free core
   each.

The main process runs on one thread (`torch.set_num_threads(1)`, `TOKENIZERS_PARALLELISM=false`), like a
DataLoader worker: torch sets one thread per worker, and tokenizers turns its own threads off in forked workers
once the parent has used them (the zero-shot evaluation before training does). Image files are read back from the
page cache just after being written: a cold disk or a network file system adds its own latency. Prints markdown
tables; writes `benchmarks/results/data_pipeline_cpu.json` (`--output` to change).
"""

import argparse
import json
import math
import os
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import PIL
import PIL.features
import torch
from PIL import Image
from torch.utils.data import DataLoader

from mamo_hf import MamoImageProcessorPil, MamoProcessor
from mamo_hf.data import PretrainingCollator, clean_caption
from mamo_hf.data.demo import caption, demo_scene, demo_tokenizer, draw_scene, write_demo_dataset
from mamo_hf.data.records import read_image
from mamo_hf.training import EpochShuffleSampler, PretrainingArguments
from mamo_hf.training.data import build_train_dataset

SIZES = {"demo": 64, "small": 128, "base": 256}  # training resolution, pixels
# Pairs/s the full five-objective fp32 training step consumes on the 2-core development machine (BENCHMARKS.md):
# demo from `benchmarks/ablation.py time` (0.294 s per step of 32 pairs, one thread), small from
# `benchmarks/peer_step.py --size small` (2.8 pairs/s, two threads). Other sizes or machines: --step-pairs-per-second.
STEP_PAIRS_PER_SECOND = {"demo": 108.8, "small": 2.8}
TARGET_RATIO = 3.0
WEB_IMAGE_SIZE = (500, 375)  # width, height of the JPEG sources of small and base
WEB_IMAGE_NOISE = 12.0  # std of the pixel noise, 8-bit levels
WEB_IMAGE_QUALITY = 90


# ---------------------------------------------------------------------------------------------------------------
# Source images
# ---------------------------------------------------------------------------------------------------------------


def write_web_images(folder: Path, num_pairs: int, seed: int) -> Path:
    """`num_pairs` JPEGs that decode like web photos (see the module docstring) and their caption JSON, in the layout
    of `write_demo_dataset`; returns the annotation file."""
    (folder / "images").mkdir(parents=True)
    noise = np.random.default_rng(seed)
    records = []
    for index in range(num_pairs):
        scene = demo_scene(seed, index)
        drawn = draw_scene(scene, WEB_IMAGE_SIZE[0]).resize(WEB_IMAGE_SIZE, Image.Resampling.BICUBIC)
        pixels = np.asarray(drawn, dtype=np.float32) + noise.normal(0, WEB_IMAGE_NOISE, (*WEB_IMAGE_SIZE[::-1], 3))
        path = f"images/{index:06d}.jpg"
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / path, quality=WEB_IMAGE_QUALITY)
        records.append({"image": path, "caption": caption(scene)})
    annotation_file = folder / "captions.json"
    annotation_file.write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")
    return annotation_file


def write_sources(size: str, folder: Path, num_pairs: int, seed: int) -> tuple[Path, dict]:
    """The annotation file of `size`'s source images, and a description of them."""
    if size == "demo":
        annotation_file = write_demo_dataset(folder, num_pairs, seed=seed, image_size=SIZES["demo"])
        source = {"format": "PNG", "width": SIZES["demo"], "height": SIZES["demo"]}
    else:
        annotation_file = write_web_images(folder, num_pairs, seed)
        source = {"format": f"JPEG q{WEB_IMAGE_QUALITY}", "width": WEB_IMAGE_SIZE[0], "height": WEB_IMAGE_SIZE[1]}
    files = list((folder / "images").iterdir())
    source["mean_file_kib"] = round(sum(file.stat().st_size for file in files) / len(files) / 1024, 1)
    return annotation_file, source


# ---------------------------------------------------------------------------------------------------------------
# The training path and its timing
# ---------------------------------------------------------------------------------------------------------------


def build_loader(dataset, collator: PretrainingCollator, arguments: PretrainingArguments) -> DataLoader:
    """The loader of `_pretrain` on one process."""
    sampler = EpochShuffleSampler(len(dataset), arguments.seed, batch_size=arguments.batch_size)
    return DataLoader(
        dataset,
        batch_size=arguments.batch_size,
        sampler=sampler,
        collate_fn=collator,
        num_workers=arguments.num_workers,
        drop_last=True,
        generator=torch.Generator().manual_seed(arguments.seed),
    )


def time_loader(loader: DataLoader, warmup: int, batches: int) -> tuple[list[float], dict]:
    """Seconds between consecutive batches over `batches` batches after `warmup` untimed ones, and the last batch's
    tensor shapes."""
    iterator = iter(loader)
    for _ in range(warmup):
        next(iterator)
    arrivals = [time.perf_counter()]
    for _ in range(batches):
        batch = next(iterator)
        arrivals.append(time.perf_counter())
    del iterator  # stops the workers
    shapes = {name: list(value.shape) for name, value in batch.items() if isinstance(value, torch.Tensor)}
    return [later - earlier for earlier, later in zip(arrivals, arrivals[1:])], shapes


def loader_row(dataset, collator, arguments: PretrainingArguments, batches: int, step_rate: float) -> dict:
    """Throughput of the loader with `arguments.num_workers` workers, warmed up by one batch per worker."""
    intervals, shapes = time_loader(build_loader(dataset, collator, arguments), max(1, arguments.num_workers), batches)
    pairs_per_second = batches * arguments.batch_size / sum(intervals)
    return {
        "workers": arguments.num_workers,
        "median_batch_seconds": statistics.median(intervals),
        "pairs_per_second": pairs_per_second,
        "ratio_to_step": pairs_per_second / step_rate,
        "batch_shapes": shapes,
    }


def decode_and_augment_seconds(dataset, indices: range) -> tuple[float, float]:
    """Total seconds to decode the images of `indices` and to augment them (`dataset.transform`)."""
    decode = augment = 0.0
    for index in indices:
        pair = dataset._pair(index)
        text = clean_caption(pair.caption, dataset.max_words)
        started = time.perf_counter()
        image = read_image(pair, dataset.max_image_pixels)
        decoded = time.perf_counter()
        dataset.transform(image, text, random.Random(index))
        augment += time.perf_counter() - decoded
        decode += decoded - started
    return decode, augment


def collate_seconds(dataset, collator: PretrainingCollator, indices: range, batch_size: int) -> tuple[float, float]:
    """Total seconds to collate the items of `indices` in batches of `batch_size`, and to tokenise their captions."""
    items = [dataset[index] for index in indices]
    collate = tokenize = 0.0
    for first in range(0, len(items), batch_size):
        captions = [item["caption"] for item in items[first : first + batch_size]]
        started = time.perf_counter()
        collator(items[first : first + batch_size])
        collated = time.perf_counter()
        collator.processor(
            text=captions, padding="longest", truncation=True, max_length=collator.max_length, return_tensors="pt"
        )
        tokenize += time.perf_counter() - collated
        collate += collated - started
    return collate, tokenize


def item_milliseconds(dataset, collator: PretrainingCollator, num_items: int, batch_size: int) -> dict:
    """Milliseconds per item of each stage, in the main process."""
    indices = range(num_items)
    decode, augment = decode_and_augment_seconds(dataset, indices)
    collate, tokenize = collate_seconds(dataset, collator, indices, batch_size)
    stages = {"decode": decode, "augment": augment, "collate": collate}
    split = {name: 1000 * seconds / num_items for name, seconds in stages.items()}
    return {**split, "tokenize (in collate)": 1000 * tokenize / num_items, "total": sum(split.values())}


def measure_size(size: str, args, folder: Path, num_pairs: int, worker_counts: list[int]) -> dict:
    """Write `size`'s source images under `folder`, then time its loaders and split its item time."""
    annotation_file, source = write_sources(size, folder / size, num_pairs, args.seed)
    image_size = SIZES[size]
    processor = MamoProcessor(
        image_processor=MamoImageProcessorPil(size={"height": image_size, "width": image_size}),
        tokenizer=demo_tokenizer(),
    )
    arguments = PretrainingArguments(train_file=[str(annotation_file)], batch_size=args.batch_size, seed=args.seed)
    dataset = build_train_dataset(arguments, image_size)
    collator = PretrainingCollator(processor, arguments.max_length)
    step_rate = args.step_pairs_per_second or STEP_PAIRS_PER_SECOND.get(size)
    if step_rate is None:
        raise SystemExit(f"No measured step rate for size {size!r}: give --step-pairs-per-second.")
    rows = []
    for workers in worker_counts:
        arguments.num_workers = workers
        rows.append(loader_row(dataset, collator, arguments, args.batches, step_rate))
    per_worker = rows[0]["pairs_per_second"]  # worker_counts starts with 0: the main process
    return {
        "image_size": image_size,
        "source": {**source, "pairs": num_pairs},
        "step_pairs_per_second": step_rate,
        "step_rate_from": "--step-pairs-per-second" if args.step_pairs_per_second else "measured, see BENCHMARKS.md",
        "loader": rows,
        "item_ms": item_milliseconds(dataset, collator, args.sample_items, args.batch_size),
        "workers_for_target": math.ceil(TARGET_RATIO * step_rate / per_worker),
    }


# ---------------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------------


def throughput_table(results: dict) -> str:
    lines = [
        "| size | source images | workers | median batch s | pairs/s | step pairs/s | pipeline / step |",
        "|---|---|---|---|---|---|---|",
    ]
    for size, result in results.items():
        source = result["source"]
        described = f"{source['format']} {source['width']}×{source['height']} → {result['image_size']} px"
        step = f"{result['step_pairs_per_second']:g}"
        for row in result["loader"]:
            verdict = "ok" if row["ratio_to_step"] >= TARGET_RATIO else f"below {TARGET_RATIO:g}×"
            lines.append(
                f"| {size} | {described} | {row['workers']} | {row['median_batch_seconds']:.3f} | "
                f"{row['pairs_per_second']:.0f} | {step} | {row['ratio_to_step']:.1f}× ({verdict}) |"
            )
    return "\n".join(lines)


def split_table(results: dict) -> str:
    lines = [
        "| size | decode ms | augment ms | collate ms (tokenize) | total ms/item | one worker, pairs/s | "
        f"workers for {TARGET_RATIO:g}× |",
        "|---|---|---|---|---|---|---|",
    ]
    for size, result in results.items():
        ms = result["item_ms"]
        lines.append(
            f"| {size} | {ms['decode']:.2f} | {ms['augment']:.2f} | {ms['collate']:.2f} "
            f"({ms['tokenize (in collate)']:.2f}) | {ms['total']:.2f} | {1000 / ms['total']:.0f} | "
            f"{result['workers_for_target']} |"
        )
    return "\n".join(lines)


def environment() -> dict:
    return {
        "torch": torch.__version__,
        "pillow": PIL.__version__,
        "libjpeg_turbo": PIL.features.check_feature("libjpeg_turbo"),
        "cpu": platform.processor() or platform.machine(),
        "usable_cores": len(os.sched_getaffinity(0)),
    }


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(STEP_PAIRS_PER_SECOND))
    parser.add_argument("--batches", type=int, default=20, help="timed batches per loader")
    parser.add_argument("--batch-size", type=int, default=PretrainingArguments.batch_size)
    parser.add_argument("--workers", type=int, help="a further number of DataLoader workers to time")
    parser.add_argument("--sample-items", type=int, default=64, help="items of the per-stage split")
    parser.add_argument("--step-pairs-per-second", type=float, help="what the training step consumes (one size)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "data_pipeline_cpu.json")
    args = parser.parse_args()
    if args.step_pairs_per_second is not None and len(args.sizes) > 1:
        parser.error("--step-pairs-per-second is the step rate of one size: give a single --sizes with it.")
    return args


def main():
    args = parse_arguments()
    torch.set_num_threads(1)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    worker_counts = sorted({0, PretrainingArguments.num_workers, args.workers or 0})
    warmup = max(1, *worker_counts)
    num_pairs = max(args.batch_size * (warmup + args.batches), args.sample_items)
    results = {}
    with tempfile.TemporaryDirectory(prefix="mamo-data-pipeline-") as folder:
        for size in args.sizes:
            results[size] = measure_size(size, args, Path(folder), num_pairs, worker_counts)
            print(f"{size}: done", flush=True)
    print(throughput_table(results), split_table(results), sep="\n\n")
    report = {"settings": {**vars(args), "output": str(args.output)}, "environment": environment(), "sizes": results}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
