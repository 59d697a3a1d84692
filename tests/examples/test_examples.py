"""Every fine-tuning example runs end to end on a few steps of its default (generated or easy-VQA) data, writes its
metrics, its model card (whose snippet loads the task head) and a model that loads back with the task's class; each
takes every `TrainingArguments` flag, with its own defaults (TensorBoard, checkpoints) that a given flag overrides."""

import importlib
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import EXAMPLES
from huggingface_hub import ModelCard

from mamo_hf import MamoForImageTextRetrieval, MamoForPreTraining, MamoForQuestionAnswering, MamoForVisualReasoning


def run_example(script: str, output_dir: Path, *arguments: str) -> dict:
    """Run `examples/<script>` with `--output_dir output_dir`; return its `metrics.json` (`{}` if it writes none)."""
    command = [sys.executable, str(EXAMPLES / script), "--output_dir", str(output_dir), *arguments]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    metrics = output_dir / "metrics.json"
    return json.loads(metrics.read_text()) if metrics.exists() else {}


def trainer_state(folder: Path) -> dict:
    return json.loads((folder / "trainer_state.json").read_text())


def logged(folder: Path, key: str) -> dict[int, float]:
    """`{step: value}` of `key` in the `trainer_state.json` of `folder`."""
    return {entry["step"]: entry[key] for entry in trainer_state(folder)["log_history"] if key in entry}


def has_tensorboard_events(output_dir: Path) -> bool:
    return any(output_dir.glob("runs/*/events.out.tfevents.*"))


def assert_card(output_dir: Path, task: str | None, head: type, monkeypatch) -> None:
    """The model card has the run's results, and its first usage snippet loads the folder as `head` (the folder's
    `auto_map` maps the snippet for users without `mamo_hf` to `head` too)."""
    card = ModelCard.load(output_dir / "README.md")
    assert card.data.library_name == "transformers"
    if task:
        assert task in card.data.tags and {result.task_type for result in card.data.eval_results} == {task}
    usage = card.text.split("## How to use")[1].split("\n## ")[0]
    with_mamo_hf, without = re.findall(r"```python\n(.*?)```", usage, flags=re.S)
    monkeypatch.chdir(output_dir.parent)  # the snippets load the folder by its name
    namespace = {}
    exec(with_mamo_hf, namespace)
    assert type(namespace["model"]) is head
    auto_class = re.search(r"model = (\w+)\.from_pretrained", without).group(1)
    assert (
        json.loads((output_dir / "config.json").read_text())["auto_map"][auto_class]
        == f"modeling_mamo.{head.__name__}"
    )


@pytest.mark.parametrize(
    "script, arguments_class, save_strategy",
    [
        ("finetune_vqa", "VQAArguments", "epoch"),
        ("finetune_nlvr2", "NLVR2Arguments", "epoch"),
        ("finetune_retrieval", "RetrievalArguments", "epoch"),
        ("grounding", "GroundingArguments", "steps"),
        ("pretrain_with_trainer", "PretrainingExampleArguments", "steps"),
    ],
)
def test_examples_take_training_arguments_with_their_defaults_and_a_given_flag_wins(
    script, arguments_class, save_strategy, monkeypatch, tmp_path
):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "elsewhere" / "checkpoint-4").mkdir(parents=True)  # a checkpoint to resume must exist
    example, trainer_cli = importlib.import_module(script), importlib.import_module("trainer_cli")
    arguments_class = getattr(example, arguments_class)

    def parse(*arguments):
        return trainer_cli.parse_arguments(arguments_class, "", example.TRAINING_DEFAULTS, args=list(arguments))

    _, defaults = parse()
    assert defaults.report_to == ["tensorboard"] and defaults.save_strategy == save_strategy
    assert defaults.output_dir == example.TRAINING_DEFAULTS["output_dir"] and defaults.save_total_limit == 2
    assert defaults.learning_rate == example.TRAINING_DEFAULTS["learning_rate"]
    _, given = parse(
        *("--report_to", "none", "--save_strategy", "no", "--output-dir", "elsewhere", "--learning_rate", "0.5"),
        *("--resume_from_checkpoint", "elsewhere/checkpoint-4", "--epochs", "3", "--batch-size", "5"),
    )
    assert given.report_to == [] and given.save_strategy == "no" and given.output_dir == "elsewhere"
    assert given.learning_rate == 0.5 and given.resume_from_checkpoint == "elsewhere/checkpoint-4"
    assert given.num_train_epochs == 3 and given.per_device_train_batch_size == 5  # the examples' old spellings


def test_vqa_example_logs_to_tensorboard_and_saves_checkpoints_by_default(tmp_path, monkeypatch):
    metrics = run_example(
        "finetune_vqa.py",
        tmp_path,
        *("--max_train_questions", "256", "--max_test_questions", "64", "--num_train_epochs", "1"),
        *("--per_device_train_batch_size", "32", "--eval_strategy", "epoch"),
    )
    assert metrics["steps"] == 8 and metrics["scored_questions"] == 64
    # evaluated at the epoch's end (the final weights) with the soft targets: the official score of the test answers
    assert logged(tmp_path, "eval_vqa_accuracy") == {8: pytest.approx(metrics["accuracy"], abs=0.01)}
    assert 0 <= metrics["accuracy"] <= 100 and set(metrics["per_answer_type"]) <= {"yes/no", "other"}
    predictions = json.loads((tmp_path / "predictions.json").read_text())
    assert len(predictions) == 64 and {"question_id", "answer"} == set(predictions[0])
    model = MamoForQuestionAnswering.from_pretrained(tmp_path)
    assert {prediction["answer"] for prediction in predictions} <= set(model.config.label2id)
    # by default: TensorBoard, and a checkpoint at the end of each epoch
    assert has_tensorboard_events(tmp_path) and trainer_state(tmp_path / "checkpoint-8")["global_step"] == 8
    assert_card(tmp_path, "visual-question-answering", MamoForQuestionAnswering, monkeypatch)


def test_nlvr2_example_evaluates_each_epoch_with_eval_strategy(tmp_path, monkeypatch):
    metrics = run_example(
        "finetune_nlvr2.py",
        tmp_path,
        *("--train_samples", "64", "--test_samples", "32", "--num_train_epochs", "1", "--eval_strategy", "epoch"),
    )
    assert metrics["steps"] == 2 and 0 <= metrics["eval_accuracy"] <= 100
    assert logged(tmp_path, "eval_accuracy").keys() == {2}  # evaluated during training, at the epoch's end
    assert has_tensorboard_events(tmp_path) and (tmp_path / "checkpoint-2" / "trainer_state.json").is_file()
    MamoForVisualReasoning.from_pretrained(tmp_path)
    assert_card(tmp_path, "visual-reasoning", MamoForVisualReasoning, monkeypatch)


def test_retrieval_example_trains_with_trainer_saves_checkpoints_and_resumes_one(tmp_path, monkeypatch):
    """No collator adds `return_loss`: the model computes its loss in training mode. Resuming from step 2 of a run
    continues it: the same losses at steps 3 and 4 as the run that was not interrupted."""
    arguments = (
        *("--train_images", "32", "--test_images", "8", "--image_size", "32", "--k", "4"),
        *("--max_steps", "4", "--per_device_train_batch_size", "8", "--logging_steps", "1"),
        *("--report_to", "tensorboard", "--save_strategy", "steps", "--save_steps", "2"),
        *("--eval_strategy", "steps", "--eval_steps", "4"),
    )
    first = tmp_path / "first"
    metrics = run_example("finetune_retrieval.py", first, *arguments)
    assert metrics["steps"] == 4 and set(metrics["after"]) == {"itc", "itm"}
    losses = logged(first, "loss")
    assert sorted(losses) == [1, 2, 3, 4] and all(math.isfinite(loss) and loss > 0 for loss in losses.values())
    assert logged(first, "eval_itm_txt_r1").keys() == {4}  # `--eval_strategy` runs the retrieval protocol
    assert has_tensorboard_events(first)
    assert [trainer_state(first / f"checkpoint-{step}")["global_step"] for step in (2, 4)] == [2, 4]
    MamoForImageTextRetrieval.from_pretrained(first)
    assert_card(first, "image-text-retrieval", MamoForImageTextRetrieval, monkeypatch)

    resumed = tmp_path / "resumed"
    metrics = run_example(
        "finetune_retrieval.py", resumed, *arguments, "--resume_from_checkpoint", str(first / "checkpoint-2")
    )
    assert metrics["steps"] == 4 and not (resumed / "checkpoint-2").exists()
    assert trainer_state(resumed / "checkpoint-4")["global_step"] == 4
    assert logged(resumed, "loss") == pytest.approx(losses, rel=1e-5)


def test_grounding_example_without_tensorboard_or_checkpoints_when_told_and_evaluating_when_told(
    tmp_path, monkeypatch
):
    metrics = run_example(
        "grounding.py",
        tmp_path,
        *("--train_scenes", "40", "--eval_scenes", "8", "--max_steps", "3", "--warmup_steps", "1", "--overlays", "2"),
        *("--report_to", "none", "--save_strategy", "no", "--eval_strategy", "steps", "--eval_steps", "3"),
    )
    default = metrics["test"]["default"]
    assert default["queries"] == "words" and 0 <= default["accuracy"] <= 100
    assert 0 < default["random_baseline"] < 100
    assert len(metrics["overlays"]) == 2 and all(Path(path).is_file() for path in metrics["overlays"])
    assert not has_tensorboard_events(tmp_path) and not list(tmp_path.glob("checkpoint-*"))
    assert 0 <= logged(tmp_path, "eval_accuracy")[3] <= 100  # the validation scenes' accuracy during training
    MamoForImageTextRetrieval.from_pretrained(tmp_path)
    assert_card(tmp_path, "visual-grounding", MamoForImageTextRetrieval, monkeypatch)


def test_pretrain_with_trainer_example(tmp_path, monkeypatch):
    run_example(
        "pretrain_with_trainer.py",
        tmp_path,
        *("--max_steps", "2", "--save_steps", "2", "--per_device_train_batch_size", "4", "--train_pairs", "16"),
        *("--image_size", "32", "--logging_steps", "1"),
    )
    assert sorted(logged(tmp_path, "loss")) == [1, 2] and has_tensorboard_events(tmp_path)
    assert trainer_state(tmp_path / "checkpoint-2")["global_step"] == 2
    assert_card(tmp_path, None, MamoForPreTraining, monkeypatch)


def test_the_trainer_examples_run_without_tensorboard_installed(tmp_path):
    """The documented install does not bring TensorBoard: the examples then log to no tracker instead of failing."""
    code = """
import sys
import transformers.integrations
transformers.integrations.is_tensorboard_available = lambda: False  # as on a machine without it
sys.path.insert(0, sys.argv[1])
import trainer_cli
print(trainer_cli.TRAINER_DEFAULTS["report_to"])
"""
    examples = EXAMPLES
    result = subprocess.run([sys.executable, "-c", code, str(examples)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "none"
