"""The examples answer a bad argument or data file with one line naming it, refuse a push that would fail before
training, and say that test questions without answers are predicted, not scored."""

import json
import subprocess
import sys

import pytest
from helpers import EXAMPLES, one_line_error
from PIL import Image

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


def run_example(example: str, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / example), *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    ("example", "arguments", "expected"),
    [
        ("finetune_vqa.py", ["--num_answers", "0"], "--num_answers must be an integer >= 1, got 0"),
        ("finetune_vqa.py", ["--train_file", "/no/such.json"], "--train_file /no/such.json: no such file"),
        ("finetune_vqa.py", ["--image_size", "50"], "--image_size 50 must be a multiple of --patch_size 8"),
        ("finetune_retrieval.py", ["--k", "0"], "--k must be an integer >= 1, got 0"),
        ("finetune_retrieval.py", ["--test_file", "/no/such.json"], "--test_file /no/such.json: no such file"),
        ("finetune_nlvr2.py", ["--train_samples", "0"], "--train_samples must be an integer >= 1"),
        ("finetune_nlvr2.py", ["--init", "./no/such/model"], "--init ./no/such/model: no such folder"),
        ("grounding.py", ["--train_scenes", "0"], "--train_scenes must be an integer >= 1, got 0"),
        ("grounding.py", ["--refs", "{file}"], "--refs is evaluated with a fine-tuned model: add --checkpoint"),
        ("pretrain_with_trainer.py", ["--train_pairs", "-1"], "--train_pairs must be an integer >= 1, got -1"),
        ("pretrain_with_trainer.py", ["--image_size", "40"], "--image_size 40 must be a multiple of --patch_size 16"),
        ("finetune_nlvr2.py", ["--image_size", "50"], "--image_size 50 must be a multiple of 4: a model from scratch"),
        ("finetune_retrieval.py", ["--image_size", "2"], "--image_size 2 must be a multiple of 4"),
        ("finetune_vqa.py", ["--train_file", "{file}"], "--train_file needs --test_file too"),
        ("finetune_nlvr2.py", ["--test_file", "{file}"], "--test_file needs --train_file too"),
        ("finetune_vqa.py", ["--per_device_train_batch_size", "0"], "--per_device_train_batch_size must be an"),
        ("finetune_retrieval.py", ["--gradient_accumulation_steps", "0"], "--gradient_accumulation_steps must be an"),
        ("finetune_nlvr2.py", ["--learning_rate", "nan"], "--learning_rate must be a finite number >= 0, got nan"),
        ("finetune_vqa.py", ["--num_train_epochs", "-1"], "--num_train_epochs must be a finite number > 0"),
        ("pretrain_with_trainer.py", ["--fp16"], "--fp16 needs a CUDA GPU and none is available"),
        ("grounding.py", ["--max_steps", "0"], "--max_steps must be >= 1: grounding.py draws its batches"),
        ("grounding.py", ["--layer", "2"], "--layer 2: the model has 2 fusion layers, numbered 0 to 1"),
        ("pretrain_with_trainer.py", ["--image_size", "100000"], "--image_size must be at most 4096, got 100000"),
        ("finetune_retrieval.py", ["--init", "{empty}"], "--init {empty}: not a saved model"),
        ("finetune_vqa.py", ["--init", "{vit}"], "--init {vit}: a vit checkpoint, not MAMO"),
        ("grounding.py", ["--checkpoint", "{vit}"], "--checkpoint {vit}: a vit checkpoint, not MAMO"),
        ("grounding.py", ["--checkpoint", "{mamo}"], "--checkpoint is evaluated on RefCOCO+: add --refcoco_files"),
        (
            "grounding.py",
            ["--checkpoint", "{mamo}", "--refcoco_files", "{file}"],
            "--checkpoint is evaluated on RefCOCO+: add --detections (ALBEF's refcoco+/dets.json)",
        ),
        ("finetune_vqa.py", ["--output_dir", "{file}"], "--output_dir {file} is a file; give a folder"),
        # issue 29: HfArgumentParser's refusal of an unknown flag, and a checkpoint folder that does not exist
        ("finetune_vqa.py", ["--frobnicate", "1"], "Some specified arguments are not used by the HfArgumentParser"),
        ("finetune_retrieval.py", ["--resume_from_checkpoint", "/nowhere"], "--resume_from_checkpoint /nowhere: no"),
    ],
)
def test_the_examples_answer_a_bad_argument_with_one_line_naming_it(tmp_path, example, arguments, expected):
    (tmp_path / "refs.p").write_bytes(b"")
    folders = {"empty": tmp_path / "empty", "vit": tmp_path / "vit", "mamo": tmp_path / "mamo"}
    for name, folder in folders.items():
        folder.mkdir()
        if name != "empty":  # what the checks read: the config's model_type
            (folder / "config.json").write_text(json.dumps({"model_type": name}))
    names = {"file": tmp_path / "refs.p", **folders}
    arguments, expected = [value.format(**names) for value in arguments], expected.format(**names)
    if "--output_dir" not in arguments:
        arguments += ["--output_dir", str(tmp_path / "out")]
    result = run_example(example, *arguments)
    assert result.returncode in (1, 2)  # 2: found by the argument parser; 1: against the model it builds
    one_line_error(result, result.stderr, f"{example}: error:", expected)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("example", "files", "expected"),
    [
        ("finetune_vqa.py", "captions.json", "captions.json, record 0: not a VQA record (no question_id"),
        ("finetune_vqa.py", "empty.json", "empty.json: an empty list; expected VQA records"),
        ("finetune_retrieval.py", "broken.json", "broken.json: not valid JSON (line 1, column 1)"),
        ("finetune_nlvr2.py", "empty.json", "empty.json: an empty list; expected NLVR2 records"),
        ("finetune_nlvr2.py", "captions.json", "captions.json, record 0: `images` must list two image paths"),
        ("finetune_nlvr2.py", "pairs.json", "pairs.json: 2 of 2 image files do not exist, the first"),
        ("finetune_vqa.py", "questions.json", "questions.json: 1 of 1 image files do not exist, the first"),
        ("finetune_vqa.py", "numbers.json", "numbers.json, record 0: `question` must be a non-empty string, got 7"),
        ("finetune_vqa.py", "answers.json", "answers.json, record 0: `answer` must be a string or a list of strings"),
        ("finetune_retrieval.py", "empty.json", "No usable records in the annotation files ['"),
        ("finetune_retrieval.py", "gone_images.json", "records in a row from index"),
        (
            "finetune_vqa.py",
            "no_answers.json",
            "no_answers.json: no question has an answer; there is nothing to learn",
        ),
    ],
)
def test_the_examples_answer_a_bad_data_file_with_one_line_naming_it(tmp_path, example, files, expected):
    (tmp_path / "captions.json").write_text(json.dumps([{"image": "a.png", "caption": "a red cube"}]))
    (tmp_path / "empty.json").write_text("[]")
    (tmp_path / "broken.json").write_text("not json")
    pairs = [{"images": ["l.png", "r.png"], "sentence": "two cubes", "label": "True"}]
    (tmp_path / "pairs.json").write_text(json.dumps(pairs))
    (tmp_path / "questions.json").write_text(json.dumps([{"question_id": 1, "question": "q?", "image": "gone.png"}]))
    (tmp_path / "numbers.json").write_text(json.dumps([{"question_id": 1, "question": 7, "image": "a.png"}]))
    answers = [{"question_id": 1, "question": "how many?", "image": "a.png", "answer": [2, 3]}]
    (tmp_path / "answers.json").write_text(json.dumps(answers))
    (tmp_path / "gone_images.json").write_text(json.dumps([{"image": "gone.png", "caption": "a red cube"}] * 9))
    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    unanswered = [{"question_id": index, "question": "what?", "image": "a.png", "answer": []} for index in range(4)]
    (tmp_path / "no_answers.json").write_text(json.dumps(unanswered))
    data = ["--train_file", str(tmp_path / files), "--test_file", str(tmp_path / files), "--image_root", str(tmp_path)]
    result = run_example(example, *data, "--output_dir", str(tmp_path / "out"))
    assert result.returncode == 1
    one_line_error(result, result.stderr, f"{example}: error: --train_file/--test_file:", expected)
    assert not (tmp_path / "out").exists()


def test_the_examples_refuse_push_to_hub_before_training_when_the_upload_would_fail(tmp_path):
    result = run_example("finetune_nlvr2.py", "--push_to_hub", "--output_dir", str(tmp_path / "out"))  # offline
    assert result.returncode == 2
    one_line_error(result, result.stderr, "finetune_nlvr2.py: error: --push_to_hub would fail", "HF_HUB_OFFLINE=1")


def test_vqa_test_questions_without_answers_are_predicted_and_said_unscored(tmp_path):
    """test-dev has no answers: the run writes its predictions and says that nothing was scored (its last line began
    with an empty accuracy)."""
    for colour in ("red", "blue"):
        Image.new("RGB", (32, 32), colour).save(tmp_path / f"{colour}.png")
    questions = [
        {"question_id": index, "question": "what colour is it?", "image": f"{colour}.png", "answer": [colour]}
        for index, colour in enumerate(["red", "blue"] * 4)
    ]
    (tmp_path / "train.json").write_text(json.dumps(questions))
    (tmp_path / "test.json").write_text(json.dumps([{**question, "answer": []} for question in questions[:2]]))
    result = run_example(
        "finetune_vqa.py", "--train_file", str(tmp_path / "train.json"), "--test_file", str(tmp_path / "test.json"),
        "--image_root", str(tmp_path), "--image_size", "32", "--max_steps", "1", "--report_to", "none",
        "--save_strategy", "no", "--output_dir", str(tmp_path / "out"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1].startswith("No test question has answers to score (predictions in")
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["scored_questions"] == 0
    assert len(json.loads((tmp_path / "out" / "predictions.json").read_text())) == 2
