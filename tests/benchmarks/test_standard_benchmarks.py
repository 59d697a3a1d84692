"""`benchmarks/standard_benchmarks.py` from its command line: conversions, scores, and bad files answered in one
line."""

import importlib.util
import json

import pytest
from helpers import REPOSITORY, coco_captions, karpathy_coco, retrieval_model_and_processor, winoground


@pytest.fixture(scope="module")
def model_and_processor():
    return retrieval_model_and_processor()


def benchmark_script():
    spec = importlib.util.spec_from_file_location(
        "standard_benchmarks", REPOSITORY / "benchmarks" / "standard_benchmarks.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_command_line_converts_scores_and_reports_bad_files_in_one_line(model_and_processor, tmp_path):
    script = benchmark_script()
    karpathy = karpathy_coco(tmp_path)
    script.main(["convert-karpathy", "--karpathy", str(karpathy), "--output-dir", str(tmp_path / "converted")])
    written = {path.name: json.loads(path.read_text()) for path in (tmp_path / "converted").iterdir()}
    assert sorted(written) == ["coco_test.json", "coco_train.json", "coco_val.json"]
    assert len(written["coco_train.json"]) == 10 and len(written["coco_test.json"]) == 2
    script.main(["convert-coco", "--annotations", str(coco_captions(tmp_path)), "--output", str(tmp_path / "c.json")])
    assert len(json.loads((tmp_path / "c.json").read_text())) == 3

    model, processor = model_and_processor
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    output = tmp_path / "scores" / "winoground.json"
    root = winoground(tmp_path / "winoground")
    script.main(["winoground", "--root", str(root), "--model", str(tmp_path / "model"), "--output", str(output)])
    report = json.loads(output.read_text())
    assert report["benchmark"] == "winoground" and report["count"] == 3
    assert set(report["itm"]) == {"text", "image", "group", "by_tag"} and report["chance"]["text"] == 25.0
    coco_output = tmp_path / "scores" / "coco.json"
    model_folder = str(tmp_path / "model")
    script.main(
        [
            "coco",
            "--karpathy",
            str(karpathy),
            "--image-root",
            str(tmp_path),
            "--model",
            model_folder,
            "--output",
            str(coco_output),
        ]
    )
    coco_report = json.loads(coco_output.read_text())
    assert coco_report["images"] == 2 and coco_report["texts"] == 10 and "txt_r1" in coco_report["itm"]

    def one_line_error(argv: list[str]) -> str:
        with pytest.raises(SystemExit) as caught:
            script.main(argv)
        message = str(caught.value)
        assert message.startswith(f"standard_benchmarks.py {argv[0]}: error: ") and "\n" not in message
        return message

    assert "no config.json" in one_line_error(["winoground", "--root", str(root), "--model", str(tmp_path)])
    assert "visual_genome_relation.json" in one_line_error(["aro", "--root", str(tmp_path), "--model", model_folder])
    (root / "examples.jsonl").write_text("{oops\n")
    assert "line 1: not valid JSON" in one_line_error(["winoground", "--root", str(root), "--model", model_folder])
