"""Retrieval evaluation files (`mamo_hf.data.retrieval`): a bad file is an error naming the file and record."""

import json
import re

import pytest
from PIL import Image

from mamo_hf.data.retrieval import load_retrieval_split


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        ([], "test.json: an empty list; expected retrieval records"),
        ({"image": "a.png"}, "test.json: expected a JSON list of retrieval records"),
        ([{"image": "a.png"}], "test.json, record 0: needs an `image` path and at least one `caption`"),
        ([{"image": "a.png", "caption": ["a cube", 3]}], "test.json, record 0: every `caption` must be a string"),
        ([{"image": "gone.png", "caption": "a cube"}], "test.json: 1 of 1 image files do not exist, the first"),
    ],
)
def test_a_bad_retrieval_evaluation_file_is_an_error_naming_the_file_and_record(tmp_path, records, expected):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "test.json").write_text(json.dumps(records))
    with pytest.raises((ValueError, FileNotFoundError), match=re.escape(expected)):
        load_retrieval_split(tmp_path / "test.json")
