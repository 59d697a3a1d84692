"""The record of what a run wrote (`mamo_hf.training.manifest`): kept atomically, cleared exactly, never reaching
out of its folder."""

import json

from mamo_hf.training.manifest import MANIFEST_FILE, RunManifest


def test_recorded_paths_are_removed_and_nothing_else(tmp_path):
    manifest = RunManifest(tmp_path)
    assert not manifest.exists() and manifest.written() == []
    (tmp_path / "checkpoint-2").mkdir()
    (tmp_path / "checkpoint-2" / "model.safetensors").write_bytes(b"x")
    (tmp_path / "logs" / "mamo").mkdir(parents=True)
    (tmp_path / "model.safetensors").write_bytes(b"x")
    (tmp_path / "mine.txt").write_text("a user's file")
    manifest.record("checkpoint-2", "logs/mamo")
    manifest.record("model.safetensors", "checkpoint-2")  # recording twice keeps one entry
    assert manifest.written() == ["checkpoint-2", "logs/mamo", "model.safetensors"]
    assert sorted(manifest.clear()) == ["checkpoint-2", "logs/mamo", "model.safetensors"]
    assert sorted(path.name for path in tmp_path.iterdir()) == [MANIFEST_FILE, "mine.txt"]  # the empty logs/ too
    assert manifest.exists() and manifest.written() == []


def test_an_edited_record_never_reaches_out_of_its_folder(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (tmp_path / "outside.txt").write_text("keep me")
    recorded = ["../outside.txt", str(tmp_path / "outside.txt"), MANIFEST_FILE, 7, "ok.txt"]
    (folder / MANIFEST_FILE).write_text(json.dumps({"written": recorded}))
    (folder / "ok.txt").write_text("ours")
    manifest = RunManifest(folder)
    assert manifest.written() == ["ok.txt"]
    assert manifest.clear() == ["ok.txt"] and (tmp_path / "outside.txt").read_text() == "keep me"
    (folder / MANIFEST_FILE).write_text("[not an object")
    assert manifest.written() == []
