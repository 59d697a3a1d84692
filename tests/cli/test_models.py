"""`mamo-hf init-base` and `push` (`mamo_hf.cli.models`): a MAMO made from a ViT and a BERT that the Auto classes load,
bad sources answered with one line, and a push that would fail refused before anything is sent."""

import json
import shutil

import huggingface_hub.constants
import pytest
import torch
from helpers import one_line_error, recording_hub, run_main, tiny_tokenizer
from PIL import Image
from transformers import AutoModel, AutoProcessor, BertConfig, BertForMaskedLM, ViTConfig, ViTImageProcessor, ViTModel

from mamo_hf import MamoModel, MamoProcessor
from mamo_hf_cli import main

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    torch.manual_seed(0)
    vit_config = ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, image_size=32, patch_size=8
    )
    ViTModel(vit_config).save_pretrained(root / "vit")
    ViTImageProcessor(image_mean=[0.4, 0.5, 0.6], image_std=[0.2, 0.25, 0.3]).save_pretrained(root / "vit")
    tokenizer = tiny_tokenizer()
    BertForMaskedLM(
        BertConfig(
            vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=37
        )
    ).save_pretrained(root / "bert")
    tokenizer.save_pretrained(root / "bert")
    return root


def test_init_base_writes_a_folder_the_auto_classes_load(sources, tmp_path, capsys):
    output = tmp_path / "mamo-tiny"
    main(
        [
            "init-base",
            "--vision",
            str(sources / "vit"),
            "--text",
            str(sources / "bert"),
            "--output",
            str(output),
            "--image-size",
            "48",
        ]
    )
    assert "new weights" in capsys.readouterr().out
    model = AutoModel.from_pretrained(output)
    processor = AutoProcessor.from_pretrained(output)
    assert type(model) is MamoModel and type(processor) is MamoProcessor
    assert model.config.vision_config.image_size == 48
    assert processor.image_processor.size == {"height": 48, "width": 48}
    assert list(processor.image_processor.image_mean) == pytest.approx([0.4, 0.5, 0.6])
    assert list(processor.image_processor.image_std) == pytest.approx([0.2, 0.25, 0.3])
    assert processor.tokenizer.get_vocab() == tiny_tokenizer().get_vocab()
    saved_config = json.loads((output / "config.json").read_text())
    assert saved_config["text_config"]["mask_token_id"] == tiny_tokenizer().mask_token_id

    inputs = processor(
        images=[Image.new("RGB", (64, 50), "red")] * 2,
        text=["a red square", "a blue circle at the top"],
        padding=True,
        return_tensors="pt",
    )
    assert inputs["pixel_values"].shape == (2, 3, 48, 48)
    with torch.no_grad():
        outputs = model(**inputs)
    assert outputs.last_hidden_state.shape[1] == inputs["input_ids"].shape[1] + 1 + 36


@pytest.mark.parametrize(
    ("vision", "text", "extra", "expected"),
    [
        ("bert", "bert", [], "--vision {root}/bert: a bert checkpoint; --vision takes a ViT checkpoint."),
        ("vit", "vit", [], "--text {root}/vit: a vit checkpoint; --text takes a BERT checkpoint."),
        ("empty", "bert", [], "--vision {root}/empty: no config.json"),
        ("./no/such", "bert", [], "--vision ./no/such: no such folder"),
        ("vit", "bert_without_tokenizer", [], "bert_without_tokenizer: no tokenizer in this folder (none of"),
        ("vit", "bert_empty_vocabulary", [], "a tokenizer without a vocabulary (only its 5 special tokens)"),
        ("vit_without_weights", "bert", [], "no file named model.safetensors"),
        ("vit", "bert", ["--image-size", "50"], "--image-size 50: must be a multiple of {root}/vit's patch size (8)"),
        ("vit", "bert", ["--num-text-layers", "4"], "--num-text-layers 4: {root}/bert has 4 layers"),
        ("vit", "bert", ["--output", "{root}/vit"], "--output {root}/vit: exists and is not an empty folder"),
        ("vit", "bert_one_layer", [], "--text {root}/bert_one_layer: a BERT of 1 layer(s); MAMO needs at least 2"),
    ],
)
def test_init_base_answers_bad_sources_and_an_occupied_output_with_one_line(
    sources, tmp_path, capsys, vision, text, extra, expected
):
    """Before this check, these ended in tracebacks, or silently built a MAMO whose image encoder was a BERT, whose
    tokenizer had no vocabulary, or that replaced a model already in the output folder."""
    (sources / "empty").mkdir(exist_ok=True)
    for folder, kept in (
        ("bert_without_tokenizer", "bert"),
        ("bert_empty_vocabulary", "bert"),
        ("vit_without_weights", "vit"),
    ):
        (sources / folder).mkdir(exist_ok=True)
        for name in ("config.json", "model.safetensors") if kept == "bert" else ("config.json",):
            (sources / folder / name).write_bytes((sources / kept / name).read_bytes())
    (sources / "bert_empty_vocabulary" / "vocab.txt").write_text("")
    shutil.copytree(sources / "bert", sources / "bert_one_layer", dirs_exist_ok=True)
    one_layer = json.loads((sources / "bert" / "config.json").read_text()) | {"num_hidden_layers": 1}
    (sources / "bert_one_layer" / "config.json").write_text(json.dumps(one_layer))
    before = sorted(path.name for path in (sources / "vit").iterdir())
    location = [value if value.startswith(".") else str(sources / value) for value in (vision, text)]
    extra = [value.format(root=sources) for value in extra]
    output = ["--output", str(tmp_path / "out")] if "--output" not in extra else []
    code = main(["init-base", "--vision", location[0], "--text", location[1], *output, *extra])
    stderr = capsys.readouterr().err
    assert code == 1 and "Traceback" not in stderr
    assert stderr.startswith("mamo-hf init-base: error: ") and expected.format(root=sources) in stderr.strip()
    assert len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
    assert sorted(path.name for path in (sources / "vit").iterdir()) == before


def test_init_base_requires_its_arguments(capsys):
    with pytest.raises(SystemExit):
        main(["init-base", "--vision", "somewhere"])
    assert "--text" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("offline", "token", "expected"),
    [("1", "hf_any", "HF_HUB_OFFLINE=1 is set"), ("0", None, "no Hub token: run `hf auth login` or set HF_TOKEN")],
)
def test_a_push_that_would_fail_is_refused_before_training_and_by_mamo_hf_push(
    tmp_path, capsys, monkeypatch, offline, token, expected
):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", offline == "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    if token:
        monkeypatch.setenv("HF_TOKEN", token)
    run = tmp_path / "run"
    code, stderr = run_main(capsys, "pretrain", "--output-dir", str(run), "--push-to-hub", "--hub-model-id", "me/m")
    assert code == 1
    one_line_error(None, stderr, "mamo-hf pretrain: error: --push-to-hub would fail after training:", expected)
    assert not (run / "logs").exists()
    (tmp_path / "saved").mkdir()
    (tmp_path / "saved" / "config.json").write_text("{}")
    code, stderr = run_main(capsys, "push", str(tmp_path / "saved"), "me/m")
    assert code == 1
    one_line_error(None, stderr, "mamo-hf push: error: me/m:", expected)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    yield from recording_hub(tmp_path, monkeypatch)


def test_push_refuses_a_folder_that_is_not_a_saved_model(tmp_path, hub):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="not a saved model folder"):  # one line, no traceback
        main(["push", str(tmp_path / "empty"), "someone/nothing"])
    assert hub.calls == []
