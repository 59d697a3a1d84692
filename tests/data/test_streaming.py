"""`StreamingCaptionDataset` (`mamo_hf.data.streaming`): JSONL and CSV files and streaming Hugging Face datasets read
once per pass, bad records skipped and reported, shards over ranks and workers disjoint and complete."""

import itertools
import json
import re
from types import SimpleNamespace

import pytest
import torch
from datasets import Dataset, Image, load_dataset
from helpers import UNREADABLE, bad_records_folder, png_bytes, save_image, skips_of, write_jsonl

from mamo_hf.data import CaptionOptions, SkippedSample, StreamingCaptionDataset, TrainTransform


@pytest.fixture
def bad_folder(tmp_path):
    return bad_records_folder(tmp_path)


def test_streaming_one_pass_skips_bad_records_then_cycles(bad_folder):
    folder, records, expected = bad_folder
    lines = [json.dumps(record) for record in records]
    lines.insert(2, "{not json")
    (folder / "captions.jsonl").write_text("\n".join(lines) + "\n")
    stream = iter(StreamingCaptionDataset(folder / "captions.jsonl"))
    items = list(itertools.islice(stream, 3))
    assert [item["caption"] for item in items] == ["pair zero", "pair two", "pair five"]
    skipped = [skipped for item in items for skipped in item["skipped"]]
    bad_line = SkippedSample(f"{folder / 'captions.jsonl'}, line 3", "bad annotation: ")
    lines_after_the_bad_one = skips_of(
        folder, "captions.jsonl", expected, lambda index: f"line {index + 1 + (index >= 2)}"
    )
    assert set(skipped) - {skipped[1]} == lines_after_the_bad_one and len(skipped) == 4
    assert skipped[1].source == bad_line.source and skipped[1].reason.startswith(bad_line.reason)
    again = next(stream)  # the next pass
    assert again["caption"] == "pair zero" and again["image_id"] == items[0]["image_id"] and again["skipped"] == ()


def test_streaming_strict_raises_naming_the_file(bad_folder):
    folder, records, _ = bad_folder
    write_jsonl(folder / "captions.jsonl", records)
    stream = iter(StreamingCaptionDataset(folder / "captions.jsonl", options=CaptionOptions(strict=True)))
    assert next(stream)["caption"] == "pair zero"
    with pytest.raises(ValueError, match=r"corrupt\.png: unreadable image"):
        next(stream)


def test_streaming_csv_list_of_files_and_shared_image_ids(tmp_path):
    save_image(tmp_path / "a.png")
    write_jsonl(tmp_path / "one.jsonl", [{"image": "a.png", "caption": ["x", "y"]}])
    (tmp_path / "two.csv").write_text(f"image,caption\n{tmp_path / 'a.png'},z\n")
    items = list(itertools.islice(StreamingCaptionDataset([tmp_path / "one.jsonl", tmp_path / "two.csv"]), 3))
    assert [item["caption"] for item in items] == ["x", "y", "z"]
    assert len({item["image_id"] for item in items}) == 1
    with pytest.raises(ValueError, match=r"unknown format '\.json'"):
        StreamingCaptionDataset(tmp_path / "one.json")


def numbered_records(folder, count):
    save_image(folder / "a.png")
    return [{"image": "a.png", "caption": f"record {index}"} for index in range(count)]


def one_pass(stream) -> tuple[list[str], list[SkippedSample]]:
    """Captions and skips of one pass over a shard whose captions are unique: items up to the first repeat, whose
    `skipped` still belongs to the pass."""
    captions, skipped = [], []
    for item in stream:
        skipped += item["skipped"]
        if item["caption"] in captions:
            return captions, skipped
        captions.append(item["caption"])


def test_streaming_shards_over_ranks_and_workers_are_disjoint_and_cover_every_record(tmp_path, monkeypatch):
    write_jsonl(tmp_path / "c.jsonl", numbered_records(tmp_path, 11))
    shards = {}
    for rank, worker in itertools.product(range(2), range(2)):
        monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: SimpleNamespace(id=worker, num_workers=2))
        shards[rank, worker], _ = one_pass(StreamingCaptionDataset(tmp_path / "c.jsonl", rank=rank, world_size=2))
    for (rank, worker), captions in shards.items():
        assert captions == [f"record {index}" for index in range(rank * 2 + worker, 11, 4)]
    assert sorted(caption for captions in shards.values() for caption in captions) == sorted(
        f"record {index}" for index in range(11)
    )


def test_streaming_with_real_dataloader_workers(tmp_path):
    write_jsonl(tmp_path / "c.jsonl", numbered_records(tmp_path, 8))
    loader = torch.utils.data.DataLoader(
        StreamingCaptionDataset(tmp_path / "c.jsonl", options=CaptionOptions(transform=TrainTransform(8))),
        batch_size=2,
        num_workers=2,
        collate_fn=list,
    )
    items = [item for batch in itertools.islice(loader, 4) for item in batch]
    assert sorted(item["caption"] for item in items) == sorted(f"record {index}" for index in range(8))
    assert all(item["image"].size == (8, 8) for item in items)


def test_streaming_rank_arguments_are_checked(tmp_path):
    write_jsonl(tmp_path / "c.jsonl", numbered_records(tmp_path, 1))
    with pytest.raises(ValueError, match="both rank and world_size"):
        StreamingCaptionDataset(tmp_path / "c.jsonl", rank=1)
    with pytest.raises(ValueError, match="got no records"):
        next(iter(StreamingCaptionDataset(tmp_path / "c.jsonl", rank=1, world_size=2)))


def test_streaming_worker_without_records_stops_and_all_bad_shard_raises(tmp_path, monkeypatch):
    write_jsonl(tmp_path / "c.jsonl", numbered_records(tmp_path, 1) + [{"image": "gone.png", "caption": "x"}])
    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: SimpleNamespace(id=1, num_workers=2))
    with pytest.raises(ValueError, match=r"Every record of this shard was bad.*gone\.png"):
        next(iter(StreamingCaptionDataset(tmp_path / "c.jsonl")))
    assert list(StreamingCaptionDataset(tmp_path / "c.jsonl", rank=1, world_size=2)) == []


def test_streaming_hf_dataset_sharded_with_bad_records(tmp_path, monkeypatch):
    rows = [png_bytes() if index != 5 else b"not an image" for index in range(12)]
    dataset = Dataset.from_dict(
        {
            "image": [{"bytes": data, "path": None} for data in rows],
            "caption": [f"record {index}" for index in range(12)],
        }
    ).cast_column("image", Image())
    shards, skips = {}, []
    for rank, worker in itertools.product(range(2), range(2)):
        monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: SimpleNamespace(id=worker, num_workers=2))
        stream = StreamingCaptionDataset.from_hf_dataset(
            dataset.to_iterable_dataset(num_shards=4), rank=rank, world_size=2
        )
        shards[rank, worker], skipped = one_pass(stream)
        skips += skipped
    assert set().union(*shards.values()) == {f"record {index}" for index in range(12) if index != 5}
    assert len(skips) == 1 and skips[0].reason == UNREADABLE
    assert re.fullmatch(r"record \d+ of rank \d, worker \d", skips[0].source)
    assert sum(map(len, shards.values())) == 11  # disjoint


def test_streaming_hf_json_dataset_from_load_dataset(tmp_path):
    save_image(tmp_path / "a.png")
    save_image(tmp_path / "b.png")
    records = [
        {"image": str(tmp_path / "a.png"), "caption": "one"},
        {"image": str(tmp_path / "b.png"), "caption": "two"},
    ]
    write_jsonl(tmp_path / "c.jsonl", records + [{"image": str(tmp_path / "a.png"), "caption": "three"}])
    dataset = load_dataset("json", data_files=str(tmp_path / "c.jsonl"), split="train", streaming=True)
    items = list(itertools.islice(StreamingCaptionDataset.from_hf_dataset(dataset), 3))
    assert [item["caption"] for item in items] == ["one", "two", "three"]
    assert items[0]["image_id"] == items[2]["image_id"] != items[1]["image_id"]
