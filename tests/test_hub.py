"""Hub publishing, offline: a stand-in `HfApi` records the calls and writes each commit into a folder, which then
loads like the Hub repository would, natively and with `trust_remote_code=True` without `mamo_hf`."""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from helpers import recording_hub
from huggingface_hub import ModelCard
from safetensors.torch import save_file
from transformers import AutoModel, AutoModelForPreTraining, AutoProcessor
from transformers.pipelines import SUPPORTED_TASKS

from mamo_hf import MamoModel
from mamo_hf.data import DemoCaptionDataset
from mamo_hf.hub import create_model_card
from mamo_hf.training import PretrainingArguments, pretrain
from mamo_hf_cli import main


@pytest.fixture
def hub(tmp_path, monkeypatch):
    yield from recording_hub(tmp_path, monkeypatch)


def trained_folder(tmp_path, **extra) -> Path:
    args = PretrainingArguments(
        output_dir=str(tmp_path / "mamo-tiny"),
        image_size=32,
        demo_pairs=64,
        eval_pairs=16,
        batch_size=8,
        max_steps=2,
        num_workers=0,
        checkpoint_every=1,
        log_every=1,
        report_to=["csv"],
        eval_k=4,
        **extra,
    )
    pretrain(args)
    return Path(args.output_dir)


def reference_inputs(folder: Path):
    """Inputs and the saved model's outputs on them, stored next to the model for the fresh-process check."""
    processor = AutoProcessor.from_pretrained(folder)
    items = [DemoCaptionDataset(2, seed=9, image_size=32)[index] for index in range(2)]
    inputs = processor(
        images=[item["image"] for item in items],
        text=[item["caption"] for item in items],
        padding=True,
        return_tensors="pt",
    )
    with torch.no_grad():
        outputs = AutoModel.from_pretrained(folder).eval()(**inputs)
    return items, inputs, outputs


def test_pretraining_pushes_model_processor_code_and_card_in_one_commit(tmp_path, hub):
    folder = trained_folder(tmp_path, push_to_hub=True, hub_model_id="someone/mamo-tiny")
    assert [call[0] for call in hub.calls] == ["create_repo", "create_commit"]
    paths = set(hub.calls[1][2]["paths"])
    assert {
        "config.json",
        "model.safetensors",
        "processor_config.json",
        "tokenizer.json",
        "README.md",
        "modeling_mamo.py",
        "configuration_mamo.py",
        "losses_mamo.py",
        "processing_mamo.py",
        "image_processing_mamo.py",
    } <= paths
    assert not any(path.startswith(("checkpoint-", "logs/")) for path in paths)  # training leftovers stay behind

    repo = hub.root / "someone" / "mamo-tiny"
    assert type(AutoModel.from_pretrained(repo)) is MamoModel
    assert type(AutoModelForPreTraining.from_pretrained(repo)).__name__ == "MamoForPreTraining"
    _, pushed_inputs, pushed = reference_inputs(repo)
    _, inputs, expected = reference_inputs(folder)
    torch.testing.assert_close(pushed_inputs["pixel_values"], inputs["pixel_values"], atol=0, rtol=0)
    torch.testing.assert_close(pushed.last_hidden_state, expected.last_hidden_state, atol=0, rtol=0)


def test_the_model_card_has_valid_metadata_with_the_measured_metrics(tmp_path, hub):
    folder = trained_folder(tmp_path, push_to_hub=True, hub_model_id="someone/mamo-tiny")
    card = ModelCard.load(hub.root / "someone" / "mamo-tiny" / "README.md")
    assert card.data.library_name == "transformers" and "mamo" in card.data.tags
    assert card.data.datasets == ["mamo_hf demo scenes"]
    summary = json.loads((folder / "pretraining_summary.json").read_text())
    measured = {result.metric_name: result.metric_value for result in card.data.eval_results}
    assert {result.metric_type for result in card.data.eval_results} == {"recall"}  # a type the Hub knows
    assert measured["R@1, text retrieval, ITC"] == pytest.approx(summary["retrieval_after"]["itc"]["txt_r1"], abs=0.01)
    assert measured["R@5, image retrieval, ITM"] == pytest.approx(
        summary["retrieval_after"]["itm"]["img_r5"], abs=0.01
    )
    assert 'from_pretrained("someone/mamo-tiny"' in card.text  # the usage snippet names the repository
    assert "@inproceedings{zhao2023mamo" in card.text


REMOTE_LOAD = textwrap.dedent(
    """
    import json, sys
    sys.modules["mamo_hf"] = None  # the package is not importable: only the repository's code may run
    import torch
    from PIL import Image
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoProcessor

    repo, reference = sys.argv[1], sys.argv[2]
    model = AutoModel.from_pretrained(repo, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(repo, trust_remote_code=True)
    images = [Image.open(f"{reference}/image{index}.png") for index in range(2)]
    captions = json.load(open(f"{reference}/captions.json"))
    inputs = processor(images=images, text=captions, padding=True, return_tensors="pt")
    with torch.no_grad():
        outputs = model(**inputs)
    expected = load_file(f"{reference}/expected.safetensors")
    torch.testing.assert_close(outputs.last_hidden_state, expected["last_hidden_state"], atol=0, rtol=0)
    torch.testing.assert_close(outputs.logits_per_image, expected["logits_per_image"], atol=0, rtol=0)
    print("REMOTE", type(model).__module__)
    """
)


def test_cli_push_then_trust_remote_code_in_a_fresh_process_reproduces_outputs(tmp_path, hub, capsys):
    folder = trained_folder(tmp_path)
    main(["push", str(folder), "someone/mamo-cli"])
    assert "someone/mamo-cli" in capsys.readouterr().out
    items, _, expected = reference_inputs(folder)
    reference = tmp_path / "reference"
    reference.mkdir()
    for index, item in enumerate(items):
        item["image"].save(reference / f"image{index}.png")
    (reference / "captions.json").write_text(json.dumps([item["caption"] for item in items]))
    save_file(
        {
            "last_hidden_state": expected.last_hidden_state.contiguous(),
            "logits_per_image": expected.logits_per_image.contiguous(),
        },
        reference / "expected.safetensors",
    )
    environment = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    environment.pop("PYTHONPATH", None)
    result = subprocess.run(
        [sys.executable, "-c", REMOTE_LOAD, str(hub.root / "someone" / "mamo-cli"), str(reference)],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"REMOTE transformers_modules\.\S+modeling_mamo", result.stdout)


def test_native_push_to_hub_also_carries_the_code(tmp_path, hub):
    torch.manual_seed(0)
    from helpers import tiny_config

    MamoModel(tiny_config()).push_to_hub("someone/mamo-native")
    repo = hub.root / "someone" / "mamo-native"
    config = json.loads((repo / "config.json").read_text())
    assert config["auto_map"]["AutoModel"] == "modeling_mamo.MamoModel"
    assert config["auto_map"]["AutoModelForPreTraining"] == "modeling_mamo.MamoForPreTraining"
    assert (repo / "modeling_mamo.py").exists() and (repo / "configuration_mamo.py").exists()


def test_the_repository_model_card_parses_with_valid_metadata():
    card = ModelCard.load(Path(__file__).parent.parent / "MODEL_CARD.md")
    assert card.data.library_name == "transformers" and card.data.license == "apache-2.0"
    assert card.data.base_model == ["google/vit-base-patch16-224-in21k", "google-bert/bert-base-uncased"]
    assert "mamo" in card.data.tags and card.data.pipeline_tag == "zero-shot-image-classification"
    assert card.data.pipeline_tag in SUPPORTED_TASKS  # a pipeline transformers v5 has
    assert "79.1/94.9/97.8" in card.text and "@inproceedings{zhao2023mamo" in card.text


@pytest.mark.parametrize(
    "model_class, auto_class, pipeline_tag",
    [
        ("MamoModel", "AutoModel", "zero-shot-image-classification"),
        ("MamoForPreTraining", "AutoModelForPreTraining", "zero-shot-image-classification"),
        ("MamoForImageTextRetrieval", "AutoModelForZeroShotImageClassification", "zero-shot-image-classification"),
        ("MamoForQuestionAnswering", "AutoModelForVisualQuestionAnswering", None),
        ("MamoForVisualReasoning", "AutoModelForSequenceClassification", None),
    ],
)
def test_a_card_loads_the_class_that_keeps_its_head_and_names_a_v5_pipeline(model_class, auto_class, pipeline_tag):
    card = ModelCard(str(create_model_card("someone/mamo", "A MAMO model.", model_class=model_class)))
    assert card.data.pipeline_tag == pipeline_tag and (pipeline_tag is None or pipeline_tag in SUPPORTED_TASKS)
    assert f'{model_class}.from_pretrained("someone/mamo")' in card.text
    assert f'{auto_class}.from_pretrained("someone/mamo", trust_remote_code=True)' in card.text


def test_a_local_base_model_path_is_left_out_of_the_card(tmp_path):
    from mamo_hf.hub import create_model_card

    assert create_model_card("m", "s", base_model=str(tmp_path)).data.base_model is None  # an existing folder
    assert create_model_card("m", "s", base_model="./runs/mamo-base").data.base_model is None  # not a Hub id
    assert create_model_card("m", "s", base_model="someone/mamo-base").data.base_model == "someone/mamo-base"
    both = create_model_card("m", "s", base_model=[str(tmp_path), "google-bert/bert-base-uncased"]).data.base_model
    assert both == ["google-bert/bert-base-uncased"]  # init-base from a local ViT and a Hub BERT


def cut_off(hub, monkeypatch):
    """The Hub beyond a network that cannot be reached: every request fails to connect, as without a network."""
    import httpx

    def no_network(*args, **kwargs):
        raise httpx.ConnectError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(hub, "create_repo", no_network)


def test_a_push_without_a_network_is_one_line_and_the_trained_model_is_kept(tmp_path, hub, monkeypatch, capsys):
    """Issue 29: `mamo-hf push` and `pretrain --push-to-hub` with a token but no network ended in httpx tracebacks,
    the second after training."""
    from mamo_hf.training import PretrainingError

    folder = trained_folder(tmp_path)
    cut_off(hub, monkeypatch)
    with pytest.raises(SystemExit, match="mamo-hf push: error: someone/m: no connection to the Hub \\(\\[Errno -3\\]"):
        main(["push", str(folder), "someone/m"])
    with pytest.raises(PretrainingError, match="the model is trained and saved in .*, but the upload to someone/n"):
        trained_folder(tmp_path / "again", push_to_hub=True, hub_model_id="someone/n")
    assert (tmp_path / "again" / "mamo-tiny" / "model.safetensors").is_file()
