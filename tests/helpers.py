"""What more than one test file uses (`pythonpath = tests` makes it `import helpers` everywhere, the torchrun workers
included): tiny configs, a real BERT tokenizer from a vocab, image-text batches, short pre-training runs and their
logs, `mamo-hf` run from a test with its one-line errors, the data files of each format (captions, shards, standard
benchmarks), a recording stand-in for the Hub; the exit of the torchrun workers. A helper used by one test file stays
in that file; a fixture shared by several files has its body here and a one-line fixture in each file."""

import csv
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.distributed as dist
import transformers.utils.hub
from accelerate.state import AcceleratorState, GradientState
from huggingface_hub import CommitInfo, HfApi, ModelCard, ModelCardData, RepoUrl
from PIL import Image
from safetensors.torch import load_file
from transformers import BertTokenizer

from mamo_hf import (
    JointMasking,
    MamoConfig,
    MamoForImageTextRetrieval,
    MamoForPreTraining,
    MamoImageProcessorPil,
    MamoProcessor,
)
from mamo_hf.configuration_mamo import special_token_ids
from mamo_hf.data import (
    CaptionNegatives,
    PretrainingCollator,
    SkippedSample,
    tiny_config_and_processor,
    write_demo_dataset,
)
from mamo_hf.data.vqa import easy_vqa_dataset, tokenizer_from_texts
from mamo_hf.evaluation.vqa import build_answer_vocabulary
from mamo_hf.training import PretrainingArguments
from mamo_hf_cli import main

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = (
    "a an the of on in at and with is are to left right top bottom middle center small large big red green blue "
    "yellow white black purple orange circle square triangle star picture photo image shows there two one three "
    "next above below near cat dog sits"
).split()


def tiny_tokenizer() -> BertTokenizer:
    """A real (Rust) BERT tokenizer over a few dozen words: [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4."""
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS + WORDS)}
    return BertTokenizer(vocab=vocab)


def tiny_config(**overrides) -> MamoConfig:
    """`MamoConfig.tiny` (no dropout) with the tiny tokenizer's vocabulary and special tokens."""
    tokenizer = tiny_tokenizer()
    return MamoConfig.tiny(vocab_size=len(tokenizer), special_token_ids=special_token_ids(tokenizer), **overrides)


def random_pairs(config: MamoConfig, batch_size: int = 4, length: int = 9, seed: int = 0):
    """A batch of random images and right-padded token ids with [CLS] ... [SEP] and varied lengths."""
    generator = torch.Generator().manual_seed(seed)
    size = config.vision_config.image_size
    pixel_values = torch.randn(batch_size, 3, size, size, generator=generator)
    text = config.text_config
    input_ids = torch.randint(5, text.vocab_size, (batch_size, length), generator=generator)
    attention_mask = torch.ones(batch_size, length, dtype=torch.long)
    for row in range(batch_size):
        real = length - (row % 3) * 2  # lengths length, length-2, length-4, ...
        input_ids[row, 0] = text.cls_token_id
        input_ids[row, real - 1] = text.sep_token_id
        input_ids[row, real:] = text.pad_token_id
        attention_mask[row, real:] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask, "pixel_values": pixel_values}


def exit_distributed_worker() -> None:
    """End a torchrun test worker once its results are written: a barrier (when a process group is still open),
    then `os._exit(0)`.

    Interpreter teardown is skipped on purpose. Destroying a gloo process group at exit, while a DDP reducer or a
    finished collective still holds Python-owned tensors, can deadlock: the destructor joins gloo's worker thread
    while holding the GIL, and that thread waits for the GIL to free the tensors (seen hanging a CI run, torch 2.13).
    """
    if dist.is_initialized():
        dist.barrier()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


# A pre-training run of a few steps of a tiny model on 32 px demo data, logging every step to CSV (the tests' and the
# two-process worker's `PretrainingArguments`, before their overrides).
TINY_RUN = {
    "image_size": 32,
    "demo_pairs": 256,
    "demo_max_objects": 1,
    "eval_pairs": 0,
    "batch_size": 8,
    "max_steps": 6,
    "learning_rate": 1e-3,
    "warmup_steps": 2,
    "num_workers": 0,
    "checkpoint_every": 0,
    "log_every": 1,
    "report_to": ["csv"],
    "seed": 3,
}


def run_in_fresh_process(code: str, folder: Path) -> subprocess.CompletedProcess:
    """Run `code` (`sys.argv[1]` is `folder`) in a new interpreter working in `folder`: offline, with a module cache of
    its own for `trust_remote_code` and no `PYTHONPATH`, so that only installed packages and the code a saved folder
    carries are importable (the code itself may block `mamo_hf`)."""
    environment = {**os.environ, "HF_MODULES_CACHE": str(Path(folder) / "modules"), "HF_HUB_OFFLINE": "1"}
    environment.pop("PYTHONPATH", None)
    return subprocess.run(
        [sys.executable, "-c", code, str(folder)],
        cwd=folder,
        env=environment,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )


def poison_batches(monkeypatch, calls: set[int]):
    """Give the collator's `calls`-th batches (1-based) NaN pixels."""
    real_call = PretrainingCollator.__call__
    counter = {"calls": 0}

    def call(self, items):
        batch = real_call(self, items)
        counter["calls"] += 1
        if counter["calls"] in calls:
            batch["pixel_values"] = torch.full_like(batch["pixel_values"], float("nan"))
        return batch

    monkeypatch.setattr(PretrainingCollator, "__call__", call)


def tiny_run(tmp_path, name="run", **overrides) -> PretrainingArguments:
    """A pre-training run of a few steps of a tiny model on 32 px demo data, logging every step to CSV."""
    settings = TINY_RUN | {"output_dir": str(tmp_path / name)}
    return PretrainingArguments(**(settings | overrides))


def logged(run_dir, name="train/loss") -> dict[int, float]:
    with open(Path(run_dir) / "logs" / "mamo" / "metrics.csv") as handle:
        return {int(row["step"]): float(row["value"]) for row in csv.DictReader(handle) if row["name"] == name}


def final_weights(run_dir) -> dict[str, torch.Tensor]:
    return load_file(Path(run_dir) / "model.safetensors")


def assert_same_weights(first, second, atol=0.0, rtol=0.0):
    """Equal weights, but for attention key biases: softmax ignores them, so their gradient is zero up to float
    noise, which Adam (dividing by its own tiny second moment) turns into steps of up to the learning rate."""
    assert first.keys() == second.keys()
    for name in first:
        key_bias = name.endswith("attention.k_proj.bias")
        torch.testing.assert_close(first[name], second[name], atol=1e-2 if key_bias else atol, rtol=rtol, msg=name)


REPOSITORY = Path(__file__).resolve().parent.parent
EXAMPLES = REPOSITORY / "examples"
BENCHMARKS = REPOSITORY / "benchmarks"
WORKERS = Path(__file__).parent / "workers"


def run_two_processes(output_dir: Path, **overrides) -> subprocess.CompletedProcess:
    """`pretrain` on two gloo processes (see `workers/pretrain_two_ranks.py`) with `PretrainingArguments` overrides."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--standalone",
        str(WORKERS / "pretrain_two_ranks.py"),
        str(output_dir),
        json.dumps(overrides),
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=environment)


# --------------------------------------------------------------------------------------------------------------------
# `mamo-hf` from a test: in a fresh process (`cli`) or in this one (`run_main`); its one-line errors
# --------------------------------------------------------------------------------------------------------------------


def cli(*arguments: str, timeout: int = 240) -> subprocess.CompletedProcess:
    """`mamo-hf ARGUMENTS` in a fresh process (a hang fails the test through the timeout)."""
    return subprocess.run(
        [sys.executable, "-m", "mamo_hf_cli", *arguments],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "TQDM_DISABLE": "1"},
        stdin=subprocess.DEVNULL,
    )


def one_line_error(result: subprocess.CompletedProcess | None, stderr: str, *expected: str) -> None:
    """`stderr` holds no traceback and exactly one line with "error", which holds every `expected` text."""
    assert "Traceback" not in stderr, stderr[-2000:]
    lines = [line for line in stderr.splitlines() if "error" in line]
    assert len(lines) == 1, stderr[-2000:]
    for text in expected:
        assert text in lines[0], lines[0]


def run_main(capsys, *arguments):
    """`mamo-hf ARGUMENTS` in this process: its exit status and what it wrote to stderr."""
    try:
        code = main(list(arguments))
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
        if not isinstance(exit_.code, int):
            print(exit_.code, file=sys.stderr)
    return code, capsys.readouterr().err


# --------------------------------------------------------------------------------------------------------------------
# Images, caption files and bad records for the data tests
# --------------------------------------------------------------------------------------------------------------------


UNREADABLE = "unreadable image: not an image file of a format PIL knows"


def save_image(path, colour=(200, 30, 30), size=(20, 16)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def png_bytes(colour=(30, 30, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (12, 10), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def pixels(image) -> np.ndarray:
    return np.asarray(image)


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def captions_and_ids(dataset):
    items = [dataset[index] for index in range(len(dataset))]
    return [item["caption"] for item in items], [item["image_id"] for item in items]


def bad_records_folder(tmp_path):
    """Six records: good, corrupt image, good, missing image, empty caption, good."""
    save_image(tmp_path / "a.png")
    save_image(tmp_path / "c.png", colour=(0, 200, 0))
    save_image(tmp_path / "f.png", colour=(0, 0, 200))
    (tmp_path / "corrupt.png").write_bytes(random.Random(0).randbytes(300))
    records = [
        {"image": "a.png", "caption": "pair zero"},
        {"image": "corrupt.png", "caption": "pair one"},
        {"image": "c.png", "caption": "pair two"},
        {"image": "missing.png", "caption": "pair three"},
        {"image": "a.png", "caption": " ?! "},
        {"image": "f.png", "caption": "pair five"},
    ]
    return (
        tmp_path,
        records,
        [(1, "corrupt.png", UNREADABLE), (3, "missing.png", "missing image file"), (4, "a.png", "empty caption")],
    )


def skips_of(folder, annotation_file: str, bad_records, place=lambda index: f"record {index}") -> set[SkippedSample]:
    """The `SkippedSample`s of `bad_records` (`(record index, image, reason)`): each named by its annotation file,
    its record (or line: `place`) and its image."""
    return {
        SkippedSample(f"{folder / annotation_file}, {place(index)}, image {folder / image}", reason)
        for index, image, reason in bad_records
    }


def two_colour_image(width=40, height=40):
    """Red on the left half, blue on the right half."""
    image = Image.new("RGB", (width, height), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, width // 2, height))
    return image


# --------------------------------------------------------------------------------------------------------------------
# A Hub that records what would be uploaded (nothing leaves the machine)
# --------------------------------------------------------------------------------------------------------------------


ENDPOINT = "https://huggingface.co"  # only used to build URL objects; nothing is sent


class RecordingHfApi(HfApi):
    """Records every call and materialises each commit under `root/<repo_id>` (no network)."""

    def __init__(self, root: Path):
        super().__init__(endpoint=ENDPOINT)
        self.root, self.calls = root, []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))
        (self.root / repo_id).mkdir(parents=True, exist_ok=True)
        return RepoUrl(f"{ENDPOINT}/{repo_id}", endpoint=ENDPOINT)

    def create_commit(self, repo_id, operations, commit_message, **kwargs):
        paths = [operation.path_in_repo for operation in operations]
        self.calls.append(("create_commit", repo_id, {"message": commit_message, "paths": paths}))
        for operation in operations:
            target = self.root / repo_id / operation.path_in_repo
            target.parent.mkdir(parents=True, exist_ok=True)
            source = operation.path_or_fileobj
            if isinstance(source, (str, Path)):
                shutil.copyfile(source, target)
            else:
                target.write_bytes(source if isinstance(source, bytes) else source.read())
        return CommitInfo(
            commit_url=f"{ENDPOINT}/{repo_id}/commit/1",
            commit_message=commit_message,
            commit_description="",
            oid="1" * 40,
        )

    def model_card(self, repo_id, tags=None, token=None):
        """What transformers' `push_to_hub` reads before committing: the repository's card, or a new one."""
        path = self.root / repo_id / "README.md"
        if path.exists():
            return ModelCard.load(path)
        return ModelCard.from_template(ModelCardData(tags=tags or [], library_name="transformers"))


def recording_hub(tmp_path, monkeypatch):
    """A `RecordingHfApi` under `tmp_path / "hub"` in place of the Hub, for transformers' and our pushes (a fixture's
    body: yields the API, then resets Accelerate's state)."""
    api = RecordingHfApi(tmp_path / "hub")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # nothing leaves: the API is fake
    monkeypatch.setenv("HF_TOKEN", "hf_recording")
    monkeypatch.setattr(transformers.utils.hub, "_hf_api", api)
    monkeypatch.setattr(transformers.utils.hub, "create_and_tag_model_card", api.model_card)
    yield api
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


# --------------------------------------------------------------------------------------------------------------------
# Caption negatives
# --------------------------------------------------------------------------------------------------------------------


CAPTION = "a large red circle left of a small blue square"


def setup_with_negatives(**overrides):
    """A tiny config and processor at 32 px, and a collator that adds three caption negatives per pair."""
    config, processor = tiny_config_and_processor(32, 8, tiny_tokenizer(), **overrides)
    collator = PretrainingCollator(processor, masking=JointMasking.from_config(config), negatives=CaptionNegatives(3))
    return config, processor, collator


# --------------------------------------------------------------------------------------------------------------------
# A tiny pre-training model
# --------------------------------------------------------------------------------------------------------------------


def build(**overrides):
    """`MamoForPreTraining` of `tiny_config(**overrides)`, seeded."""
    torch.manual_seed(0)
    return MamoForPreTraining(tiny_config(**overrides))


def teacher_matches_student(model):
    return all(torch.equal(t, s) for t, s in zip(model.teacher.parameters(), model.mamo.parameters()))


# --------------------------------------------------------------------------------------------------------------------
# Several runs in one test: Accelerate's state reset between them, a run folder resumed from a copy
# --------------------------------------------------------------------------------------------------------------------


def reset_accelerate():
    """Reset Accelerate's process-wide state between two runs of one test (the `fresh_accelerate_state` fixture does it
    after each test)."""
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def resume_copy(tmp_path, source: Path, checkpoint: str, name: str) -> Path:
    """A fresh run folder holding one checkpoint of `source` and its logs up to then (as if the run had been
    killed right after writing it)."""
    target = tmp_path / name
    shutil.copytree(source / checkpoint, target / checkpoint)
    shutil.copytree(source / "logs", target / "logs")
    return target


# --------------------------------------------------------------------------------------------------------------------
# A folder of photos and a saved retrieval model
# --------------------------------------------------------------------------------------------------------------------


PHOTO_COLOURS = [(220, 30, 30), (30, 200, 40), (30, 40, 220), (230, 220, 20), (240, 240, 240), (20, 20, 20)]


def save_retrieval_model(tmp_path):
    """A tiny `MamoForImageTextRetrieval` (32 px, patches of 16) and its processor saved in `tmp_path / "model"`."""
    config, processor = tiny_config_and_processor(32, patch_size=16)
    torch.manual_seed(0)
    MamoForImageTextRetrieval(config).save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def draw(path, colour, size=(40, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, (128, 128, 128))
    image.paste(colour, (5, 5, 25, 20))
    image.save(path)


def photo_folder(tmp_path):
    """`tmp_path / "photos"`: six images of a coloured square on gray, half of them in a subfolder."""
    for index, colour in enumerate(PHOTO_COLOURS):
        draw(tmp_path / "photos" / ("holiday" if index % 2 else "") / f"{index}.png", colour)
    return tmp_path / "photos"


# --------------------------------------------------------------------------------------------------------------------
# WebDataset and Parquet shards, and a short run on them
# --------------------------------------------------------------------------------------------------------------------


def image_bytes(index: int, image_format: str = "PNG") -> bytes:
    """A small image of a colour of its own (so that pairs of different images have different ids)."""
    buffer = io.BytesIO()
    colour = (index * 37 % 256, index * 91 % 256, 255 - index * 53 % 256)
    Image.new("RGB", (16, 12), colour).save(buffer, format=image_format)
    return buffer.getvalue()


def write_tar(path: Path, samples: list[tuple[str, dict[str, bytes]]], mode: str = "w") -> Path:
    """A WebDataset shard: the files `KEY.EXTENSION` of each sample, sample after sample (`mode="w:gz"`: gzipped)."""
    with tarfile.open(path, mode) as archive:
        for key, fields in samples:
            for extension, data in fields.items():
                member = tarfile.TarInfo(f"{key}.{extension}")
                member.size = len(data)
                archive.addfile(member, io.BytesIO(data))
    return path


def good_sample(index: int) -> tuple[str, dict[str, bytes]]:
    """img2dataset's layout: `KEY.png`, `KEY.txt` with the caption `pair INDEX`, and `KEY.json` metadata."""
    metadata = json.dumps({"key": f"{index:09d}", "status": "success", "caption": f"pair {index}"}).encode()
    return f"{index:09d}", {"png": image_bytes(index), "txt": f"pair {index}".encode(), "json": metadata}


def raw_parquet(path: Path, count: int, row_group_size: int = 2, **columns) -> Path:
    """img2dataset's Parquet layout: encoded images in a binary `jpg` column, captions in `text` (or `columns`)."""
    table = {
        "jpg": [image_bytes(index, "JPEG") for index in range(count)],
        "text": [f"pair {i}" for i in range(count)],
    }
    pq.write_table(pa.table(table | columns), path, row_group_size=row_group_size)
    return path


# Two optimizer steps of 8 pairs on the tiny model: more than a whole pass over the test shards, so that every bad
# record is met whatever the shuffled order.
SHORT_RUN = {"max_steps": 2, "batch_size": 8}


def shard_run(tmp_path, **overrides) -> PretrainingArguments:
    """`TINY_RUN` shortened to `SHORT_RUN`, in `tmp_path / "run"`."""
    return PretrainingArguments(**(TINY_RUN | SHORT_RUN | {"output_dir": str(tmp_path / "run")} | overrides))


# --------------------------------------------------------------------------------------------------------------------
# Standard data in its published formats (COCO, Karpathy, Winoground, ARO, SugarCrepe)
# --------------------------------------------------------------------------------------------------------------------


STANDARD_COLOURS = [(255, 0, 0), (0, 160, 0), (0, 0, 255), (250, 220, 0), (120, 0, 160), (255, 128, 0)]


def save_coloured_image(path: Path, colour, size=(40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def write(path: Path, value) -> Path:
    """`value` as JSON at `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=1), encoding="utf-8")
    return path


def coco_captions(root: Path) -> Path:
    """`annotations/captions_train2014.json` with two images (in `train2014/`) and three captions."""
    images = []
    for number, image_id in enumerate((9, 25)):
        file_name = f"COCO_train2014_{image_id:012d}.jpg"
        save_coloured_image(root / "train2014" / file_name, STANDARD_COLOURS[number])
        images.append(
            {
                "license": 3,
                "file_name": file_name,
                "coco_url": f"http://images.cocodataset.org/train2014/{file_name}",
                "height": 30,
                "width": 40,
                "date_captured": "2013-11-14 11:18:45",
                "flickr_url": "http://farm9.staticflickr.com/8186/8119368305_4e622c8349_z.jpg",
                "id": image_id,
            }
        )
    annotations = [
        {"image_id": 9, "id": 48, "caption": "A red picture of a cat."},
        {"image_id": 25, "id": 67, "caption": "A green square on the left "},
        {"image_id": 9, "id": 126, "caption": "The cat sits on a red square."},
    ]
    info = {"description": "COCO 2014 Dataset", "url": "http://cocodataset.org", "version": "1.0", "year": 2014}
    licenses = [{"url": "http://creativecommons.org/licenses/by-nc-sa/2.0/", "id": 1, "name": "Attribution"}]
    content = {"info": info, "images": images, "licenses": licenses, "annotations": annotations}
    return write(root / "annotations" / "captions_train2014.json", content)


def karpathy_coco(root: Path) -> Path:
    """`dataset_coco.json` with one image per split (two in `test`), five sentences each."""
    images, sentence_id = [], 0
    for image_number, split in enumerate(("train", "restval", "val", "test", "test")):
        cocoid = 1000 + image_number
        folder = "train2014" if split == "train" else "val2014"
        filename = f"COCO_{folder}_{cocoid:012d}.jpg"
        save_coloured_image(root / folder / filename, STANDARD_COLOURS[image_number])
        sentences = []
        for number in range(5):
            raw = f"A {['red', 'green', 'blue', 'black', 'white'][number]} picture number {image_number}."
            tokens = raw.lower().rstrip(".").split()
            sentences.append({"tokens": tokens, "raw": raw, "imgid": image_number, "sentid": sentence_id})
            sentence_id += 1
        images.append(
            {
                "filepath": folder,
                "sentids": [sentence["sentid"] for sentence in sentences],
                "filename": filename,
                "imgid": image_number,
                "split": split,
                "sentences": sentences,
                "cocoid": cocoid,
            }
        )
    return write(root / "dataset_coco.json", {"images": images, "dataset": "coco"})


def karpathy_flickr(root: Path) -> Path:
    """`dataset_flickr30k.json` (no `filepath`, no `cocoid`) with a training and a test image."""
    images = []
    for image_number, (filename, split) in enumerate((("1000092795.jpg", "train"), ("1007129816.jpg", "test"))):
        save_coloured_image(root / "flickr30k-images" / filename, STANDARD_COLOURS[image_number])
        raw = ["Two dogs sit on the grass.", "A cat on a blue square."][image_number]
        sentence = {
            "tokens": raw.lower().rstrip(".").split(),
            "raw": raw,
            "imgid": image_number,
            "sentid": image_number,
        }
        images.append(
            {
                "sentids": [image_number],
                "imgid": image_number,
                "sentences": [sentence],
                "split": split,
                "filename": filename,
            }
        )
    return write(root / "dataset_flickr30k.json", {"images": images, "dataset": "flickr30k"})


WINOGROUND_CAPTIONS = [
    ("a red circle left of a blue square", "a blue circle left of a red square"),
    ("the dog sits on the cat", "the cat sits on the dog"),
    ("a green star above a yellow triangle", "a yellow star above a green triangle"),
]


def winoground(root: Path) -> Path:
    """`examples.jsonl` with three examples and `images/ex_<id>_img_<k>.png`."""
    lines = []
    for example_id, (caption_0, caption_1) in enumerate(WINOGROUND_CAPTIONS):
        for index in (0, 1):
            save_coloured_image(
                root / "images" / f"ex_{example_id}_img_{index}.png", STANDARD_COLOURS[2 * example_id + index]
            )
        example = {
            "id": example_id,
            "image_0": f"ex_{example_id}_img_0",
            "image_1": f"ex_{example_id}_img_1",
            "caption_0": caption_0,
            "caption_1": caption_1,
            "tag": ["Adjective-Color", "Noun", "Adjective-Color"][example_id],
            "secondary_tag": "",
            "num_main_preds": 1,
            "collapsed_tag": ["Object", "Object", "Relation"][example_id],
        }
        lines.append(json.dumps(example))
    (root / "examples.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def aro(root: Path) -> Path:
    """`visual_genome_relation.json` (3 test cases), `visual_genome_attribution.json` (2) and `images/`: each
    image is black but for a coloured box, the box of its test cases."""
    for number, name in enumerate(("2315375.jpg", "2376493.jpg")):
        image = Image.new("RGB", (48, 40))
        image.paste(STANDARD_COLOURS[number], (5, 4, 25, 14))
        (root / "images").mkdir(parents=True, exist_ok=True)
        image.save(root / "images" / name, quality=95)
    box = {"bbox_x": 5, "bbox_y": 4, "bbox_w": 20, "bbox_h": 10}
    relations = [
        ("2315375.jpg", "on", "the cat is on the dog", "the dog is on the cat"),
        ("2376493.jpg", "on", "the square is on the circle", "the circle is on the square"),
        ("2315375.jpg", "left of", "the red star is left of the dog", "the dog is left of the red star"),
    ]
    write(
        root / "visual_genome_relation.json",
        [
            {"relation_name": relation, **box, "true_caption": true, "false_caption": false, "image_path": path}
            for path, relation, true, false in relations
        ],
    )
    attributions = [
        ("2315375.jpg", ["red", "large"], "the red cat and the large dog", "the large cat and the red dog"),
        (
            "2376493.jpg",
            ["green", "small"],
            "the green square and the small star",
            "the small square and the green star",
        ),
    ]
    write(
        root / "visual_genome_attribution.json",
        [
            {"attributes": attributes, **box, "true_caption": true, "false_caption": false, "image_path": path}
            for path, attributes, true, false in attributions
        ],
    )
    return root


def sugarcrepe(root: Path) -> tuple[Path, Path]:
    """`data/swap_att.json` (2 records) and `data/replace_rel.json` (1), images in `val2017/`."""
    for number in range(2):
        save_coloured_image(root / "val2017" / f"{number + 544519:012d}.jpg", STANDARD_COLOURS[number])
    write(
        root / "data" / "swap_att.json",
        {
            "0": {
                "filename": "000000544519.jpg",
                "caption": "A red cat with a blue dog.",
                "negative_caption": "A blue cat with a red dog.",
            },
            "1": {
                "filename": "000000544520.jpg",
                "caption": "A large green square next to a small star.",
                "negative_caption": "A small green square next to a large star.",
            },
        },
    )
    write(
        root / "data" / "replace_rel.json",
        {
            "0": {
                "filename": "000000544520.jpg",
                "caption": "The cat sits on the dog.",
                "negative_caption": "The cat sits below the dog.",
            }
        },
    )
    return root / "data", root / "val2017"


def retrieval_model_and_processor():
    """A tiny `MamoForImageTextRetrieval` in eval mode, seeded, and a processor at 32 px."""
    torch.manual_seed(0)
    processor = MamoProcessor(
        image_processor=MamoImageProcessorPil(size={"height": 32, "width": 32}), tokenizer=tiny_tokenizer()
    )
    return MamoForImageTextRetrieval(tiny_config()).eval(), processor


# --------------------------------------------------------------------------------------------------------------------
# A caption file with bad records
# --------------------------------------------------------------------------------------------------------------------


def bad_caption_file(tmp_path) -> Path:
    """A caption JSON whose records include a corrupt image, a missing image and an empty caption."""
    annotation_file = write_demo_dataset(tmp_path / "bad", 24, seed=2, image_size=32, max_objects=1)
    records = json.loads(annotation_file.read_text())
    (tmp_path / "bad" / "images" / "corrupt.png").write_bytes(b"\x89PNG not really")
    records[3]["image"] = "images/corrupt.png"
    records[7]["image"] = "images/missing.png"
    records[11]["caption"] = "  ...  "
    annotation_file.write_text(json.dumps(records))
    return annotation_file


# --------------------------------------------------------------------------------------------------------------------
# easy-VQA with its tokenizer, processor and answer vocabulary
# --------------------------------------------------------------------------------------------------------------------


EASY_VQA_IMAGE_SIZE = 32


def easy_vqa_parts():
    """easy-VQA with its tokenizer, processor, answer vocabulary and a tiny model config at 32 px."""
    train = easy_vqa_dataset("train")
    tokenizer = tokenizer_from_texts([record["question"] for record in train.records])
    processor = MamoProcessor(
        image_processor=MamoImageProcessorPil(size={"height": EASY_VQA_IMAGE_SIZE, "width": EASY_VQA_IMAGE_SIZE}),
        tokenizer=tokenizer,
    )
    id2label, label2id = build_answer_vocabulary(record["answers"] for record in train.records)
    config = MamoConfig.tiny(
        vocab_size=len(tokenizer),
        image_size=EASY_VQA_IMAGE_SIZE,
        special_token_ids=special_token_ids(tokenizer),
        id2label=id2label,
        label2id=label2id,
    )
    return train, processor, config


# --------------------------------------------------------------------------------------------------------------------
# A saved pre-training checkpoint with its processor and two images
# --------------------------------------------------------------------------------------------------------------------


LABELS = ["red circle", "blue square", "green triangle"]


SAVED_IMAGE_COLOURS = ((200, 30, 30), (20, 40, 220))


def tiny_processor():
    """A processor at 32 px with the tiny tokenizer."""
    return MamoProcessor(
        image_processor=MamoImageProcessorPil(size={"height": 32, "width": 32}), tokenizer=tiny_tokenizer()
    )


def save_checkpoint_and_images(tmp_path):
    """A pre-training checkpoint with its processor and two images."""
    torch.manual_seed(0)
    MamoForPreTraining(tiny_config()).save_pretrained(tmp_path)
    tiny_processor().save_pretrained(tmp_path)
    for index, colour in enumerate(SAVED_IMAGE_COLOURS):
        Image.new("RGB", (40, 30), colour).save(tmp_path / f"image{index}.png")
    return tmp_path


def images(folder):
    """The images that `save_checkpoint_and_images` wrote into `folder`, in RGB."""
    return [Image.open(folder / f"image{index}.png").convert("RGB") for index in range(len(SAVED_IMAGE_COLOURS))]


def has_colour(image: Image.Image, colour, position=(0, 0)) -> bool:
    """Whether a pixel is `colour`, up to JPEG's rounding."""
    return max(abs(a - b) for a, b in zip(image.convert("RGB").getpixel(position), colour)) <= 8


def assert_bad_files_are_named(cases) -> None:
    """For each (reader, file, content, message): write `content` (text, or JSON of an object) into `file`, and check
    that reading raises one line of `ValueError` that matches `message` and names the file."""
    import pytest

    for read, file, content, message in cases:
        file.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
        with pytest.raises(ValueError, match=message) as caught:
            read()
        assert str(file) in str(caught.value) and "\n" not in str(caught.value)
