"""`benchmarks/standard_benchmarks.py` from its command line: the conversions of COCO captions and Karpathy split
files, and a bad file answered in one line (`mamo-hf eval` scores the benchmarks: `tests/cli/test_evaluate.py`)."""

import importlib.util
import json

import pytest
from helpers import REPOSITORY, coco_captions, karpathy_coco


def benchmark_script():
    spec = importlib.util.spec_from_file_location(
        "standard_benchmarks", REPOSITORY / "benchmarks" / "standard_benchmarks.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_command_line_converts_and_reports_bad_files_in_one_line(tmp_path):
    script = benchmark_script()
    karpathy = karpathy_coco(tmp_path)
    script.main(["convert-karpathy", "--karpathy", str(karpathy), "--output-dir", str(tmp_path / "converted")])
    written = {path.name: json.loads(path.read_text()) for path in (tmp_path / "converted").iterdir()}
    assert sorted(written) == ["coco_test.json", "coco_train.json", "coco_val.json"]
    assert len(written["coco_train.json"]) == 10 and len(written["coco_test.json"]) == 2
    script.main(["convert-coco", "--annotations", str(coco_captions(tmp_path)), "--output", str(tmp_path / "c.json")])
    assert len(json.loads((tmp_path / "c.json").read_text())) == 3

    (tmp_path / "broken.json").write_text("{oops")
    with pytest.raises(SystemExit) as caught:
        script.main(["convert-karpathy", "--karpathy", str(tmp_path / "broken.json"), "--output-dir", str(tmp_path)])
    message = str(caught.value)
    assert message.startswith("standard_benchmarks.py convert-karpathy: error: ") and "\n" not in message
    assert "broken.json" in message
