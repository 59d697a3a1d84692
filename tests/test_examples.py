"""Every fine-tuning example runs end to end on a few steps of its default (generated or easy-VQA) data, writes its
metrics, its model card and a model that loads back with the task's class."""

import json
import subprocess
import sys
from pathlib import Path

from huggingface_hub import ModelCard

from mamo_hf import MamoForImageTextRetrieval, MamoForQuestionAnswering, MamoForVisualReasoning

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(script: str, output_dir: Path, *arguments: str) -> dict:
    """Run `examples/<script>` with `--output-dir output_dir`; return its `metrics.json`."""
    command = [sys.executable, str(EXAMPLES / script), "--output-dir", str(output_dir), *arguments]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads((output_dir / "metrics.json").read_text())


def assert_card_has_results(output_dir: Path, task: str) -> None:
    card = ModelCard.load(output_dir / "README.md")
    assert card.data.library_name == "transformers" and task in card.data.tags
    assert card.data.eval_results and {result.task_type for result in card.data.eval_results} == {task}


def test_vqa_example(tmp_path):
    metrics = run_example(
        "finetune_vqa.py",
        tmp_path,
        *("--max-train-questions", "256", "--max-test-questions", "64", "--epochs", "1", "--batch-size", "32"),
    )
    assert metrics["steps"] == 8 and metrics["scored_questions"] == 64
    assert 0 <= metrics["accuracy"] <= 100 and set(metrics["per_answer_type"]) <= {"yes/no", "other"}
    predictions = json.loads((tmp_path / "predictions.json").read_text())
    assert len(predictions) == 64 and {"question_id", "answer"} == set(predictions[0])
    model = MamoForQuestionAnswering.from_pretrained(tmp_path)
    assert {prediction["answer"] for prediction in predictions} <= set(model.config.label2id)
    assert_card_has_results(tmp_path, "visual-question-answering")


def test_nlvr2_example(tmp_path):
    metrics = run_example(
        "finetune_nlvr2.py", tmp_path, "--train-samples", "64", "--test-samples", "32", "--epochs", "1"
    )
    assert metrics["steps"] == 2 and 0 <= metrics["eval_accuracy"] <= 100
    MamoForVisualReasoning.from_pretrained(tmp_path)
    assert_card_has_results(tmp_path, "visual-reasoning")


def test_retrieval_example(tmp_path):
    metrics = run_example(
        "finetune_retrieval.py",
        tmp_path,
        *("--train-images", "32", "--test-images", "8", "--epochs", "1", "--image-size", "32", "--k", "4"),
    )
    assert metrics["steps"] == 2 and set(metrics["after"]) == {"itc", "itm"}
    MamoForImageTextRetrieval.from_pretrained(tmp_path)
    assert_card_has_results(tmp_path, "image-text-retrieval")


def test_grounding_example(tmp_path):
    metrics = run_example(
        "grounding.py",
        tmp_path,
        *("--train-scenes", "40", "--eval-scenes", "8", "--steps", "3", "--warmup-steps", "1", "--overlays", "2"),
    )
    default = metrics["test"]["default"]
    assert default["queries"] == "words" and 0 <= default["accuracy"] <= 100
    assert 0 < default["random_baseline"] < 100
    assert len(metrics["overlays"]) == 2 and all(Path(path).is_file() for path in metrics["overlays"])
    MamoForImageTextRetrieval.from_pretrained(tmp_path)
    assert_card_has_results(tmp_path, "visual-grounding")
