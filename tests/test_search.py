"""Text search of an image folder (`mamo_hf.search`; its commands, `mamo-hf index` and `search`, in
cli/test_images.py): the index holds exactly the ITC features of the folder's images, a re-run embeds only what
changed, and the search ranks as ITC (and ITM) do."""

import os

import pytest
import torch
from helpers import draw, photo_folder, save_retrieval_model
from PIL import Image
from safetensors import SafetensorError

from mamo_hf import MamoForImageTextRetrieval, MamoProcessor
from mamo_hf.search import default_index_path, read_index, search_index, update_index


@pytest.fixture
def saved_model(tmp_path):
    return save_retrieval_model(tmp_path)


@pytest.fixture
def model_and_processor(saved_model):
    return MamoForImageTextRetrieval.from_pretrained(saved_model).eval(), MamoProcessor.from_pretrained(saved_model)


@pytest.fixture
def photos(tmp_path):
    return photo_folder(tmp_path)


def indexed(folder):
    metadata, features = read_index(default_index_path(folder))
    return {path: features[row] for row, (path, _, _) in enumerate(metadata["entries"])}


def fresh_features(model, processor, folder, path):
    pixel_values = processor(images=[Image.open(folder / path).convert("RGB")], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        return model.get_image_features(pixel_values).pooler_output[0]


def test_the_index_holds_the_itc_features_of_every_image_under_the_folder(photos, model_and_processor):
    model, processor = model_and_processor
    update = update_index(photos, model, processor, batch_size=4)  # two batches
    assert (update.added, update.updated, update.removed, update.unchanged) == (6, 0, 0, 0)
    features = indexed(photos)
    assert sorted(features) == sorted(["0.png", "2.png", "4.png", "holiday/1.png", "holiday/3.png", "holiday/5.png"])
    for path, vector in features.items():
        torch.testing.assert_close(vector, fresh_features(model, processor, photos, path), atol=1e-5, rtol=1e-5)


def test_a_rerun_embeds_only_the_new_and_changed_images_and_drops_the_deleted(photos, model_and_processor):
    model, processor = model_and_processor
    update_index(photos, model, processor)
    index_file = default_index_path(photos)
    written = index_file.stat().st_mtime_ns
    again = update_index(photos, model, processor)
    assert (again.added, again.updated, again.removed, again.unchanged) == (0, 0, 0, 6)
    assert index_file.stat().st_mtime_ns == written  # nothing changed: not rewritten
    draw(photos / "0.png", (10, 10, 250), size=(40, 31))  # changed content and size
    draw(photos / "new" / "6.png", (250, 120, 10))
    os.remove(photos / "holiday" / "3.png")
    third = update_index(photos, model, processor)
    assert (third.added, third.updated, third.removed, third.unchanged) == (1, 1, 1, 4)
    features = indexed(photos)
    assert "holiday/3.png" not in features and len(features) == 6
    for path in ("0.png", "new/6.png", "holiday/5.png"):
        expected = fresh_features(model, processor, photos, path)
        torch.testing.assert_close(features[path], expected, atol=1e-5, rtol=1e-5)


def test_unreadable_files_are_counted_and_left_out_and_another_model_re_embeds_everything(photos, model_and_processor):
    model, processor = model_and_processor
    (photos / "broken.png").write_bytes(b"not an image")
    update = update_index(photos, model, processor)
    assert update.added == 6 and list(update.unreadable) == ["broken.png"]
    assert "1 unreadable, left out (the first: broken.png" in update.summary(default_index_path(photos))
    with torch.no_grad():
        model.mamo.image_projection.weight.mul_(-1)  # another model
    with pytest.raises(ValueError, match="built with another model"):
        search_index(photos, "a red square", model, processor)
    update = update_index(photos, model, processor)
    assert update.model_changed and update.added == 6
    torch.testing.assert_close(indexed(photos)["0.png"], fresh_features(model, processor, photos, "0.png"))


def test_search_ranks_by_itc_and_reranks_the_best_by_itm(photos, model_and_processor, monkeypatch):
    import mamo_hf.search

    # The untrained head's scores differ by about 1e-3, below the tie that keeps the ITC order: count any difference.
    monkeypatch.setattr(mamo_hf.search, "ITM_TIE", 0.0)
    model, processor = model_and_processor
    update_index(photos, model, processor)
    features, text = indexed(photos), "a red square"
    tokens = processor(text=[text], return_tensors="pt")
    with torch.no_grad():
        query = model.get_text_features(tokens["input_ids"], attention_mask=tokens["attention_mask"]).pooler_output[0]
    expected = sorted(features, key=lambda path: -float(features[path] @ query))
    hits = search_index(photos, text, model, processor, top_k=4)
    assert [hit.path for hit in hits] == expected[:4]
    assert hits[0].similarity == pytest.approx(float(features[expected[0]] @ query), abs=1e-5)
    reranked = search_index(photos, text, model, processor, top_k=3, rerank=3)
    assert {hit.path for hit in reranked} == set(expected[:3])
    images = [Image.open(photos / hit.path).convert("RGB") for hit in reranked]
    inputs = processor(images=images, text=[text] * 3, padding=True, return_tensors="pt")
    with torch.no_grad():
        itm = model(**inputs, return_loss=False).itm_scores
    assert [hit.itm_score for hit in reranked] == pytest.approx(itm.tolist(), abs=1e-5)
    assert itm.tolist() == sorted(itm.tolist(), reverse=True)


def test_an_interrupted_update_leaves_the_previous_index_whole(photos, model_and_processor, monkeypatch):
    import mamo_hf.search

    model, processor = model_and_processor
    update_index(photos, model, processor)
    before = indexed(photos)
    draw(photos / "7.png", (1, 2, 3))

    def full_disk(tensors, path, metadata=None):
        open(path, "wb").write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mamo_hf.search, "save_file", full_disk)
    with pytest.raises(OSError):
        update_index(photos, model, processor)
    assert indexed(photos).keys() == before.keys()
    assert [path.name for path in photos.glob(".*")] == [default_index_path(photos).name]  # no partial file left


@pytest.mark.parametrize(
    "failure, reason",
    [
        (OSError(30, "Read-only file system"), "Read-only file system"),
        (SafetensorError("Error while serializing: I/O error: File too large (os error 27)"), "File too large"),
    ],
)
def test_an_index_that_cannot_be_written_is_an_os_error_naming_it_and_the_reason(
    photos, model_and_processor, monkeypatch, failure, reason
):
    """Issue 29 (battery): a read-only folder or a full disk while writing the index is one `OSError` that names the
    index file and the system's reason, not the writer's own error type; nothing partial is left."""
    import mamo_hf.search

    def failing(tensors, path, metadata=None):
        open(path, "wb").write(b"half")
        raise failure

    model, processor = model_and_processor
    monkeypatch.setattr(mamo_hf.search, "save_file", failing)
    index_path = default_index_path(photos)
    with pytest.raises(OSError, match=f"{index_path}: could not write the index \\({reason}\\)") as raised:
        update_index(photos, model, processor)
    assert len(str(raised.value).splitlines()) == 1
    assert not any(photos.glob(".*"))


def test_each_writer_stages_the_index_in_a_file_of_its_own(photos, model_and_processor, monkeypatch):
    """Two `index` processes on one folder must not write into one temporary file: the staging name holds the
    writer's process id, and is gone once the index is in place."""
    import mamo_hf.search

    staged, save_file = [], mamo_hf.search.save_file

    def recording(tensors, path, metadata=None):
        staged.append(path)
        save_file(tensors, path, metadata=metadata)

    monkeypatch.setattr(mamo_hf.search, "save_file", recording)
    model, processor = model_and_processor
    update_index(photos, model, processor)
    assert len(staged) == 1 and staged[0].endswith(f".{os.getpid()}.tmp")
    assert not os.path.exists(staged[0]) and default_index_path(photos).exists()


def test_an_image_that_became_unreadable_leaves_the_index_and_is_never_served(photos, model_and_processor):
    """Issue 29: the index is rewritten when an indexed image becomes unreadable, and a search (even without an
    update) never returns an entry whose file is gone, changed or unreadable."""
    model, processor = model_and_processor
    update_index(photos, model, processor)
    (photos / "0.png").write_bytes(b"corrupt now")
    update = update_index(photos, model, processor)
    assert list(update.unreadable) == ["0.png"] and update.removed == 1
    assert "0.png" not in indexed(photos)
    hits = search_index(photos, "a red square", model, processor, top_k=10, rerank=3)
    assert "0.png" not in {hit.path for hit in hits} and len(hits) == 5

    (photos / "2.png").unlink()
    (photos / "4.png").write_bytes(b"corrupt too")  # after the last update: the index still lists both
    hits = search_index(photos, "a red square", model, processor, top_k=10, rerank=4)
    assert {hit.path for hit in hits} == {"holiday/1.png", "holiday/3.png", "holiday/5.png"}


def test_an_image_too_large_to_decode_is_skipped_not_decoded(photos, model_and_processor):
    model, processor = model_and_processor
    Image.new("L", (6000, 6000)).save(photos / "huge.png")  # 36 M pixels, above the 25 M limit
    update = update_index(photos, model, processor)
    assert "huge.png" in update.unreadable and "huge.png" not in indexed(photos)


def test_reranking_by_an_itm_head_that_cannot_tell_the_images_apart_keeps_the_itc_order(
    photos, model_and_processor, monkeypatch
):
    """Issue 30: with every ITM score ≈ the same, re-ranking reordered the images by noise."""
    import mamo_hf.search
    from mamo_hf.search import SearchHit, itm_separates

    assert not itm_separates([SearchHit("a", 0.9, 0.500), SearchHit("b", 0.8, 0.503)])
    assert itm_separates([SearchHit("a", 0.9, 0.2), SearchHit("b", 0.8, 0.7)])
    model, processor = model_and_processor
    update_index(photos, model, processor)
    by_itc = [hit.path for hit in search_index(photos, "a red square", model, processor, top_k=6)]
    noise = torch.tensor([0.5001, 0.4999, 0.5002, 0.5, 0.4998, 0.5003])
    monkeypatch.setattr(mamo_hf.search, "itm_scores", lambda *args: noise[: len(args[2])])
    hits = search_index(photos, "a red square", model, processor, top_k=6, rerank=6)
    assert [hit.path for hit in hits] == by_itc and all(hit.itm_score is not None for hit in hits)


def test_unknown_words_are_those_the_tokenizer_reads_as_unk_or_drops(model_and_processor):
    from mamo_hf.search import unknown_words

    _, processor = model_and_processor
    assert unknown_words("a red zyxwvut square \U0001f600", processor.tokenizer) == ["zyxwvut", "\U0001f600"]
    assert unknown_words("", processor.tokenizer) == []
