"""The checks shared by the commands and the examples (`mamo_hf.checks`): an output folder that is a file or cannot be
created, and a tokenizer name that is no folder, each named with its flag before any work."""

import huggingface_hub.constants
import pytest
from helpers import one_line_error, run_main, tiny_run

from mamo_hf.training import InvalidArgumentError, pretrain

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


def test_an_output_dir_that_is_a_file_or_unwritable_is_refused(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(InvalidArgumentError, match="--output-dir .* is a file, not a folder"):
        pretrain(tiny_run(tmp_path, "file"))
    with pytest.raises(InvalidArgumentError, match="--output-dir .*: cannot create it"):
        pretrain(tiny_run(tmp_path, "file/run"))


def test_a_tokenizer_name_that_is_no_folder_says_so_before_the_hub_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, stderr = run_main(capsys, "pretrain", "--output-dir", str(tmp_path / "run"), "--tokenizer", "nope",
                            "--max-steps", "1")  # fmt: skip
    assert code == 1
    one_line_error(None, stderr, "--tokenizer nope: no such folder, and as a Hub name: no usable tokenizer (")
