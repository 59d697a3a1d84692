"""WebDataset and Parquet shards for pre-training (`mamo_hf.data.shards`): reading, bad samples, ranks and workers,
epochs, and runs on them."""

import itertools
import json
import math
import tarfile
from pathlib import Path
from types import SimpleNamespace

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from helpers import SHORT_RUN, TINY_RUN, UNREADABLE, good_sample, image_bytes, raw_parquet, shard_run, write_tar

from mamo_hf.data import CaptionOptions, SkippedSample, StreamingCaptionDataset, TrainTransform
from mamo_hf.data.shards import shard_format
from mamo_hf.training import pretrain
from mamo_hf_cli import main

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")

NO_CAPTION = "missing caption: the sample has no .txt file and no 'caption' in a .json file"


def test_shard_format():
    assert shard_format(["a/0.tar", "b/1.TAR", "c.tar.gz"]) == "webdataset"
    assert shard_format(["x.parquet"]) == "parquet"
    assert shard_format(["c.json", "d.jsonl"]) is None
    with pytest.raises(ValueError, match="one kind of data per run"):
        shard_format(["a.tar", "b.parquet"])
    with pytest.raises(ValueError, match="one kind of data per run"):
        shard_format(["a.tar", "c.json"])


def split_records(monkeypatch, make_stream, epoch: int) -> list[tuple]:
    """`(source, caption)` of every record that 2 ranks × 2 DataLoader workers (simulated) read in one epoch.

    A pass is read from the stream's `records` (what its items are made of): which shards a worker reads changes
    every epoch (`datasets` reorders them), so no item marks the end of a worker's pass."""
    records = []
    for rank, worker in itertools.product(range(2), range(2)):
        with monkeypatch.context() as patch:
            patch.setattr(torch.utils.data, "get_worker_info", lambda: SimpleNamespace(id=worker, num_workers=2))
            shard = make_stream(rank=rank, world_size=2).records.shard(epoch, rank, 2)
            records += [(pair.source, pair.caption) for _, pairs in shard for pair in pairs]
    return records


def assert_split_exactly_once(monkeypatch, make_stream, pairs: int) -> None:
    """In epochs 0 and 1, 2 ranks × 2 workers read together every record of the one-process stream (`pairs` pairs,
    bad ones included), each once."""
    everything = [(pair.source, pair.caption) for _, pairs in make_stream().records.shard(0, 0, 1) for pair in pairs]
    assert len(everything) == pairs
    for epoch in (0, 1):
        assert sorted(split_records(monkeypatch, make_stream, epoch)) == sorted(everything), f"epoch {epoch}"


def one_pass(stream) -> tuple[list[str], list]:
    """Captions and skips of the first pass of a one-process stream whose captions are unique: the items up to the
    first repeat, whose `skipped` (the bad records at the end of the pass, or at the start of the next) is kept."""
    captions, skipped = [], []
    for item in stream:
        skipped += item["skipped"]
        if item["caption"] in captions:
            return captions, skipped
        captions.append(item["caption"])


def webdataset_shards(folder: Path) -> tuple[list[Path], set[str], dict[str, str]]:
    """Three shards of good and bad samples: `(shards, good captions, {source: reason} of the bad samples)`."""
    folder.mkdir(parents=True, exist_ok=True)
    first = [good_sample(index) for index in range(4)]
    first.insert(1, ("000000100", {"txt": b"pair 100", "json": b"{}"}))  # no image
    first.insert(3, ("000000101", {"png": image_bytes(101), "json": b'{"status": "success"}'}))  # no caption
    second = [good_sample(index) for index in range(4, 8)]
    second.insert(2, ("000000102", {"png": b"\x89PNG not really", "txt": b"pair 102"}))  # corrupt image
    second.append(("000000103", {"png": image_bytes(103), "txt": b"pair \xff\xfe 103"}))  # not UTF-8
    third = [good_sample(index) for index in range(8, 11)]
    third.append(("000000011", {"jpg": image_bytes(11, "JPEG"), "json": b'{"caption": "pair 11"}'}))  # JSON caption
    third.append(("sub/000000012", {"jpeg": image_bytes(12, "JPEG"), "json": b'{"caption": ["pair 12", "pair 13"]}'}))
    shards = [
        write_tar(folder / f"{number:05d}.tar", samples) for number, samples in enumerate((first, second, third))
    ]
    bad = {
        f"{shards[0]}, sample 000000100": "missing image: the sample has no .jpg, .jpeg, .png or .webp file",
        f"{shards[0]}, sample 000000101": NO_CAPTION,
        f"{shards[1]}, sample 000000102": UNREADABLE,
        f"{shards[1]}, sample 000000103": "bad annotation: the .txt file is not UTF-8 text",
    }
    return shards, {f"pair {index}" for index in range(14)}, bad


def test_webdataset_shards_give_every_good_pair_once_and_skip_and_name_the_bad_samples(tmp_path, monkeypatch):
    shards, good, bad = webdataset_shards(tmp_path)
    pattern = str(tmp_path / "{00000..00002}.tar")
    captions, skipped = one_pass(StreamingCaptionDataset.from_shards(pattern))
    assert sorted(captions) == sorted(good)
    assert {record.source: record.reason for record in skipped} == bad
    # 3 shards over 2 ranks: split by sample, then by shard over the workers.
    assert_split_exactly_once(
        monkeypatch, lambda **ranks: StreamingCaptionDataset.from_shards(pattern, **ranks), len(good) + len(bad)
    )
    with pytest.raises(ValueError, match=r"Bad record .*00000\.tar, sample 000000100: missing image"):
        list(itertools.islice(StreamingCaptionDataset.from_shards(pattern, options=CaptionOptions(strict=True)), 3))

    # The last shard in order: .txt captions, then a .jpg with a JSON caption, then a .jpeg in a sub-folder with two
    # JSON captions, which are pairs of one image.
    augmented = CaptionOptions(transform=TrainTransform(8))
    items = list(itertools.islice(StreamingCaptionDataset.from_shards(shards[2:], options=augmented), 6))
    assert [item["caption"] for item in items] == [f"pair {index}" for index in range(8, 14)]
    assert all(item["image"].size == (8, 8) and item["image"].mode == "RGB" for item in items)
    ids = [item["image_id"] for item in items]
    assert len(set(ids[:5])) == 5 and ids[5] == ids[4]


def parquet_shards(folder: Path) -> tuple[list[Path], set[str], dict[str, str]]:
    """Two Parquet files of `datasets.Image` structs and captions (strings in the first, lists of strings in the
    second), with bad rows, in row groups of 3: `(files, good captions, {source: reason} of the bad rows)`."""
    folder.mkdir(parents=True, exist_ok=True)
    images = [{"bytes": image_bytes(index), "path": None} for index in range(12)]
    images[2], images[7] = None, {"bytes": b"not an image", "path": "broken.png"}
    captions = [f"pair {index}" for index in range(7)] + [[f"pair {index}"] for index in range(7, 12)]
    captions[5], captions[9] = None, ["pair 9", "pair 12"]
    files = []
    for number, rows in enumerate((slice(0, 7), slice(7, 12))):
        columns = {"url": ["http://x"] * len(images[rows]), "image": images[rows], "caption": captions[rows]}
        dataset = datasets.Dataset.from_dict(columns)
        files.append(folder / f"part-{number}.parquet")
        pq.write_table(dataset.cast_column("image", datasets.Image()).data.table, files[-1], row_group_size=3)
    good = {f"pair {index}" for index in (0, 1, 3, 4, 6, 8, 9, 10, 11, 12)}
    bad = {
        f"{files[0]}, row 2": "missing image",
        f"{files[0]}, row 5": "empty caption",
        f"{files[1]}, row 0": UNREADABLE,
    }
    return files, good, bad


def test_parquet_shards_give_every_good_pair_once_and_skip_and_name_the_bad_rows(tmp_path, monkeypatch):
    files, good, bad = parquet_shards(tmp_path)
    pattern = str(tmp_path / "*.parquet")
    captions, skipped = one_pass(StreamingCaptionDataset.from_shards(pattern))
    assert sorted(captions) == sorted(good)
    assert {record.source: record.reason for record in skipped} == bad
    # 5 row groups over 2 ranks: split by record, then by row group over the workers.
    assert_split_exactly_once(
        monkeypatch, lambda **ranks: StreamingCaptionDataset.from_shards(pattern, **ranks), len(good) + len(bad)
    )
    # Both captions of a row are pairs of one image.
    items = {item["caption"]: item for item in itertools.islice(StreamingCaptionDataset.from_shards(files[1:]), 5)}
    assert items["pair 9"]["image_id"] == items["pair 12"]["image_id"] != items["pair 8"]["image_id"]


def test_parquet_binary_columns_found_by_their_usual_names_and_split_by_row_group(tmp_path, monkeypatch):
    raw_parquet(tmp_path / "one.parquet", 12, row_group_size=3)  # 4 row groups: one per rank and worker
    captions, skipped = one_pass(StreamingCaptionDataset.from_shards(tmp_path / "one.parquet"))
    assert sorted(captions) == sorted(f"pair {index}" for index in range(12)) and skipped == []
    assert_split_exactly_once(
        monkeypatch, lambda **ranks: StreamingCaptionDataset.from_shards(tmp_path / "one.parquet", **ranks), 12
    )


def test_parquet_columns_that_are_missing_or_of_the_wrong_type_are_named(tmp_path):
    raw_parquet(tmp_path / "a.parquet", 2)
    with pytest.raises(ValueError, match=r"a\.parquet: no image column 'picture'; its columns are \['jpg', 'text'\]"):
        StreamingCaptionDataset.from_shards(tmp_path / "a.parquet", image_column="picture")
    raw_parquet(tmp_path / "b.parquet", 2, jpg=["not", "bytes"])
    with pytest.raises(ValueError, match=r"b\.parquet: the image column 'jpg' has type string; .* encoded images"):
        StreamingCaptionDataset.from_shards(tmp_path / "b.parquet")
    raw_parquet(tmp_path / "c.parquet", 2, text=[1, 2])
    with pytest.raises(ValueError, match=r"c\.parquet: the text column 'text' has type int64"):
        StreamingCaptionDataset.from_shards(tmp_path / "c.parquet")
    pq.write_table(pa.table({"jpg": [image_bytes(0)], "caption": ["x"]}), tmp_path / "d.parquet")
    with pytest.raises(ValueError, match=r"d\.parquet: no text column 'text' \(the first file has one\)"):
        StreamingCaptionDataset.from_shards([tmp_path / "a.parquet", tmp_path / "d.parquet"])
    (tmp_path / "e.parquet").write_bytes(b"not parquet")
    with pytest.raises(ValueError, match=r"e\.parquet: not a readable Parquet file"):
        StreamingCaptionDataset.from_shards(tmp_path / "e.parquet")


def test_a_truncated_archive_keeps_its_first_samples_and_skips_the_rest_naming_the_shard(tmp_path):
    whole = write_tar(tmp_path / "whole.tar", [good_sample(index) for index in range(6)])
    with tarfile.open(whole) as archive:
        cut_member = archive.getmember("000000002.png")
    (tmp_path / "cut.tar").write_bytes(whole.read_bytes()[: cut_member.offset_data + cut_member.size // 2])
    write_tar(tmp_path / "next.tar", [good_sample(index) for index in range(6, 8)])
    captions, skipped = one_pass(StreamingCaptionDataset.from_shards([tmp_path / "cut.tar", tmp_path / "next.tar"]))
    assert captions == ["pair 0", "pair 1", "pair 6", "pair 7"]
    assert skipped == [
        SkippedSample(
            str(tmp_path / "cut.tar"),
            "unreadable shard: unexpected end of data; the samples after 000000001 are skipped",
        )
    ]


def test_shuffled_shards_change_order_every_epoch_split_every_pair_once_and_replay_identically(tmp_path, monkeypatch):
    for number in range(8):
        write_tar(tmp_path / f"{number}.tar", [good_sample(index) for index in range(number * 3, number * 3 + 3)])
    pattern = str(tmp_path / "{0..7}.tar")
    epochs = {0: [], 1: []}
    for rank, worker in itertools.product(range(2), range(2)):
        monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: SimpleNamespace(id=worker, num_workers=2))

        def first_items(shuffle_buffer, seed):
            options = CaptionOptions(seed=seed)
            stream = StreamingCaptionDataset.from_shards(
                pattern, options=options, rank=rank, world_size=2, shuffle_buffer=shuffle_buffer
            )
            return [(item["caption"], item["sample_key"]) for item in itertools.islice(stream, 12)]

        items = first_items(shuffle_buffer=4, seed=5)
        assert first_items(shuffle_buffer=4, seed=5) == items  # what a resumed run replays
        assert first_items(shuffle_buffer=0, seed=5)[:6] != items[:6]
        epochs[0] += [caption for caption, _ in items[:6]]  # 8 shards: 2 shards of 3 pairs per rank and worker
        epochs[1] += [caption for caption, _ in items[6:]]
    for captions in epochs.values():
        assert sorted(captions) == sorted(f"pair {index}" for index in range(24))
    assert epochs[0] != epochs[1]


def test_real_dataloader_workers_read_a_shard_each(tmp_path):
    for number in range(2):
        write_tar(tmp_path / f"{number}.tar", [good_sample(index) for index in range(number * 3, number * 3 + 3)])
    stream = StreamingCaptionDataset.from_shards(str(tmp_path / "*.tar"), rank=0, world_size=1)
    loader = torch.utils.data.DataLoader(stream, batch_size=1, num_workers=2, collate_fn=list)
    captions = [batch[0]["caption"] for batch in itertools.islice(loader, 6)]
    assert sorted(captions) == sorted(f"pair {index}" for index in range(6))


def test_pretraining_on_webdataset_shards_from_the_command_line(tmp_path, capsys):
    _, _, bad = webdataset_shards(tmp_path / "shards")
    arguments = TINY_RUN | SHORT_RUN | {"output_dir": str(tmp_path / "run")}
    flags = [f"--{name.replace('_', '-')}={value}" for name, value in arguments.items() if name != "report_to"]
    pattern = str(tmp_path / "shards" / "{00000..00002}.tar")
    assert main(["pretrain", "--train-file", pattern, "--report-to", "csv", *flags]) == 0
    summary = json.loads((tmp_path / "run" / "pretraining_summary.json").read_text())
    assert summary["steps"] == 2 and all(map(math.isfinite, summary["final_losses"].values()))
    assert summary["skipped_records"] == bad
    assert "Skipped 4 bad record(s)" in capsys.readouterr().out
    assert "WebDataset shards" in (tmp_path / "run" / "README.md").read_text()


def test_pretraining_on_parquet_shards(tmp_path):
    _, _, bad = parquet_shards(tmp_path / "parquet")
    summary = pretrain(shard_run(tmp_path, train_file=[str(tmp_path / "parquet" / "part-*.parquet")])).summary
    assert summary["steps"] == 2
    assert summary["skipped_records"] == bad


def test_an_archive_cut_at_a_block_boundary_is_counted_not_silently_shorter(tmp_path):
    whole = write_tar(tmp_path / "whole.tar", [good_sample(index) for index in range(6)])
    with tarfile.open(whole) as archive:
        member = archive.getmember("000000004.png")
    (tmp_path / "cut.tar").write_bytes(whole.read_bytes()[: member.offset])  # a header boundary: 512-byte aligned
    assert member.offset % 512 == 0
    captions, skipped = one_pass(StreamingCaptionDataset.from_shards([tmp_path / "cut.tar"]))
    assert captions == ["pair 0", "pair 1", "pair 2", "pair 3"]
    assert skipped == [
        SkippedSample(
            str(tmp_path / "cut.tar"),
            "unreadable shard: the archive is cut short after sample 000000003 (no end-of-archive)",
        )
    ]


def test_a_member_above_the_size_limit_is_skipped_unread(tmp_path, monkeypatch):
    from mamo_hf.data import shards

    monkeypatch.setattr(shards, "MAX_MEMBER_BYTES", 4096)
    samples = [good_sample(index) for index in range(3)]
    samples[1][1]["png"] = samples[1][1]["png"] + b"\0" * 8000  # a file of 8 kB that the limit refuses
    path = write_tar(tmp_path / "big.tar.gz", samples, mode="w:gz")
    captions, skipped = one_pass(StreamingCaptionDataset.from_shards([path]))
    assert captions == ["pair 0", "pair 2"]
    assert skipped == [SkippedSample(f"{path}, sample 000000001", "file too large: 000000001.png is above 4096 bytes")]
