"""`mamo-hf index` and `search` (`mamo_hf.cli.images`): a folder indexed and searched from the command line, and bad
input (or input that would mislead) answered with one line, nothing written."""

import pytest
from helpers import photo_folder, save_retrieval_model

from mamo_hf import MamoProcessor
from mamo_hf.search import default_index_path
from mamo_hf_cli import main


@pytest.fixture
def photos(tmp_path):
    return photo_folder(tmp_path)


@pytest.fixture
def saved_model(tmp_path):
    return save_retrieval_model(tmp_path)


def test_the_commands_index_and_search_a_folder_and_answer_bad_input_with_one_line(photos, saved_model, capsys):
    assert main(["index", str(photos), "--model", str(saved_model)]) == 0
    assert "Indexed 6 images" in capsys.readouterr().out
    assert main(["search", str(photos), "a red square", "--model", str(saved_model), "--top-k", "2"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("1. ") and "ITC cosine" in lines[0]
    assert "unknown" not in captured.err
    # words the tokenizer does not know still get a ranking, with a warning that names them
    assert (
        main(["search", str(photos), "a zyxwvut square \U0001f600", "--model", str(saved_model), "--top-k", "2"]) == 0
    )
    warning = "warning: 2 of the 4 words are unknown to the model's tokenizer (read as [UNK] or dropped)"
    assert f"{warning}: zyxwvut \U0001f600;" in capsys.readouterr().err
    default_index_path(photos).write_bytes(b"garbage")
    with pytest.raises(SystemExit, match="mamo-hf search: error: .*not a MAMO image index"):
        main(["search", str(photos), "red", "--model", str(saved_model), "--no-update"])
    with pytest.raises(SystemExit, match="mamo-hf index: error: --model /no/model: not a saved MAMO model"):
        main(["index", str(photos), "--model", "/no/model"])
    with pytest.raises(SystemExit, match="mamo-hf index: error: .*gone: not a folder"):
        main(["index", str(photos / "gone"), "--model", str(saved_model)])


def test_an_index_that_cannot_be_written_is_one_line(photos, saved_model, monkeypatch):
    """Issue 29 (battery): `index` and `search` into a read-only folder (or on a full disk) answer with one line
    naming the index file, not a traceback."""
    import mamo_hf.search

    def read_only(tensors, path, metadata=None):
        raise OSError(30, "Read-only file system", path)

    monkeypatch.setattr(mamo_hf.search, "save_file", read_only)
    for command in (["index", str(photos)], ["search", str(photos), "a red square"]):
        with pytest.raises(SystemExit, match=f"mamo-hf {command[0]}: error: .*could not write the index") as raised:
            main([*command, "--model", str(saved_model)])
        assert "Read-only file system" in str(raised.value) and len(str(raised.value).splitlines()) == 1
        assert str(raised.value).endswith("Or give --index a path elsewhere.")
    pytest.importorskip("gradio", reason="the app needs the app extra")
    with pytest.raises(SystemExit, match="mamo-hf app: error: --images .*could not write the index") as raised:
        main(["app", str(saved_model), "--images", str(photos)])  # before it serves anything
    assert "--index" not in str(raised.value)  # the app has no such flag


@pytest.mark.parametrize("content", [b"", b"\xff\xfe{", b"[1, 2]", b'{"model_type": "mamo"'])
def test_a_model_folder_whose_config_json_is_not_a_json_object_is_one_line(photos, saved_model, content):
    """Issue 29 (battery): an empty, non-UTF-8, truncated or non-object config.json in --model was a
    JSONDecodeError, UnicodeDecodeError or AttributeError traceback."""
    (saved_model / "config.json").write_bytes(content)
    with pytest.raises(SystemExit, match="mamo-hf index: error: --model .*config.json is not a JSON object"):
        main(["index", str(photos), "--model", str(saved_model)])


@pytest.mark.parametrize("missing", ["text_config.hidden_size", "vision_config"])
def test_a_model_folder_whose_config_does_not_fit_its_weights_is_one_line(photos, saved_model, missing):
    """Issue 29 (battery): a config.json missing a field (defaults that contradict the rest, or shapes that do not
    fit the weights) was a ValueError or RuntimeError traceback from loading."""
    import json

    config = json.loads((saved_model / "config.json").read_text())
    section, _, key = missing.partition(".")
    del (config[section] if key else config)[key or section]
    (saved_model / "config.json").write_text(json.dumps(config))
    for command in (["index", str(photos)], ["search", str(photos), "a red square"]):
        with pytest.raises(SystemExit, match=f"mamo-hf {command[0]}: error: --model .*: cannot load it \\(") as raised:
            main([*command, "--model", str(saved_model)])
        assert len(str(raised.value).splitlines()) == 1


def test_a_query_that_is_not_utf8_is_one_line(photos, saved_model):
    """Issue 29 (battery): a query of bytes that are not UTF-8 (Python passes them on as surrogates) was a TypeError
    traceback from the tokenizer."""
    with pytest.raises(SystemExit, match="mamo-hf search: error: TEXT is not UTF-8 text"):
        main(["search", str(photos), "red \udcff\udcfe square", "--model", str(saved_model)])


def test_index_and_search_refuse_what_would_mislead(photos, saved_model, tmp_path, capsys):
    """No images, an empty query, an index path that is a folder or in a missing folder, and re-ranking by the
    untrained ITM head of a bare `MamoModel`: each a one-line error, nothing written."""
    from mamo_hf import MamoModel

    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "a.txt").write_text("no image here")
    model = ["--model", str(saved_model)]
    cases = [
        (["index", str(tmp_path / "texts"), *model], "texts: no image files under it"),
        (["search", str(photos), "   ", *model], "TEXT is empty"),
        (["index", str(photos), *model, "--index", str(tmp_path)], "is a folder: give the index's file path"),
        (["index", str(photos), *model, "--index", str(tmp_path / "gone" / "i.st")], "gone does not exist"),
        (["index", str(photos), *model, "--index", str(tmp_path / "texts" / "a.txt" / "i.st")], "a.txt is a file"),
    ]
    MamoModel.from_pretrained(saved_model).save_pretrained(tmp_path / "bare")
    MamoProcessor.from_pretrained(saved_model).save_pretrained(tmp_path / "bare")
    bare = ["--model", str(tmp_path / "bare"), "--rerank", "3"]
    cases.append((["search", str(photos), "red", *bare], "no trained ITM"))
    for arguments, expected in cases:
        with pytest.raises(SystemExit, match=f"mamo-hf {arguments[0]}: error: .*{expected}"):
            main(arguments)
    assert not default_index_path(tmp_path / "texts").exists() and not default_index_path(photos).exists()


def test_searching_a_folder_whose_images_are_all_unreadable_is_one_line(photos, saved_model, capsys):
    for path in photos.rglob("*.png"):
        path.write_bytes(b"corrupt")
    with pytest.raises(SystemExit, match="mamo-hf search: error: .*photos: no indexed image can be read \\(6 unread"):
        main(["search", str(photos), "red", "--model", str(saved_model)])
    main(["index", str(photos), "--model", str(saved_model)])
    with pytest.raises(SystemExit, match="no indexed image can be read"):
        main(["search", str(photos), "red", "--model", str(saved_model), "--no-update", "--rerank", "3"])


def test_a_query_of_unknown_words_only_is_refused_and_a_tie_of_itm_scores_is_said(
    photos, saved_model, capsys, monkeypatch
):
    """Issue 30: a query of words the tokenizer does not know still got a ranking; a re-ranking by an ITM head that
    scores every image alike did not say so."""
    import torch

    import mamo_hf.search

    with pytest.raises(SystemExit, match="none of its words is known to the model's tokenizer \\(zyxwvut qqq"):
        main(["search", str(photos), "zyxwvut qqq", "--model", str(saved_model)])
    monkeypatch.setattr(mamo_hf.search, "itm_scores", lambda *args: torch.full((len(args[2]),), 0.5))
    assert main(["search", str(photos), "a red square", "--model", str(saved_model), "--rerank", "3"]) == 0
    assert "the ITM head gives these images nearly the same score" in capsys.readouterr().err
