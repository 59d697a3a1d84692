"""A saved folder loads with `trust_remote_code=True` in a fresh process where `mamo_hf` cannot be imported: every
head, and the zero-shot pipeline."""

import json
import re
import textwrap

import pytest
import torch
from helpers import LABELS, images, run_in_fresh_process, save_checkpoint_and_images, tiny_config, tiny_tokenizer
from PIL import Image
from safetensors.torch import save_file
from transformers import pipeline

from mamo_hf import MamoImageProcessorPil, MamoModel, MamoProcessor

CAPTIONS = ["a red circle at the top left", "two blue squares"]

REMOTE_LOAD = textwrap.dedent(
    """
    import json, sys
    sys.modules["mamo_hf"] = None  # any `import mamo_hf` now fails: the folder's own code must suffice
    import torch
    from PIL import Image
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModel, AutoProcessor

    folder = sys.argv[1]
    try:
        AutoModel.from_pretrained(folder)
    except (ValueError, KeyError):
        pass  # without trust_remote_code the model type is unknown here
    else:
        raise SystemExit("loaded without trust_remote_code although mamo_hf is not importable")
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    images = [Image.open(f"{folder}/image{i}.png") for i in range(2)]
    inputs = processor(images=images, text=json.load(open(f"{folder}/captions.json")), padding=True,
                       return_tensors="pt")
    expected = load_file(f"{folder}/expected.safetensors")
    with torch.no_grad():
        outputs = model(**inputs)
    torch.testing.assert_close(inputs["input_ids"], expected["input_ids"], atol=0, rtol=0)
    torch.testing.assert_close(inputs["pixel_values"], expected["pixel_values"], atol=0, rtol=0)
    torch.testing.assert_close(outputs.last_hidden_state, expected["last_hidden_state"], atol=0, rtol=0)
    torch.testing.assert_close(outputs.logits_per_image, expected["logits_per_image"], atol=0, rtol=0)
    print("LOADED", type(model).__module__, type(processor).__module__)
    """
)


# The modules a saved folder carries for `trust_remote_code` users.
CARRIED_MODULES = {
    "configuration_mamo.py",
    "modeling_mamo.py",
    "losses_mamo.py",
    "conversion_mamo.py",
    "processing_mamo.py",
    "image_processing_mamo.py",
}


def test_saved_folder_loads_with_trust_remote_code_without_the_package(tmp_path):
    torch.manual_seed(0)
    model = MamoModel(tiny_config()).eval()
    processor = MamoProcessor(
        image_processor=MamoImageProcessorPil(size={"height": 32, "width": 32}), tokenizer=tiny_tokenizer()
    )
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    assert {path.name for path in tmp_path.glob("*.py")} == CARRIED_MODULES  # what README's layout section says
    images = [Image.new("RGB", (40, 30), colour) for colour in ((200, 30, 30), (20, 40, 220))]
    for index, image in enumerate(images):
        image.save(tmp_path / f"image{index}.png")
    (tmp_path / "captions.json").write_text(json.dumps(CAPTIONS))
    inputs = processor(images=images, text=CAPTIONS, padding=True, return_tensors="pt")
    with torch.no_grad():
        outputs = model(**inputs)
    save_file(
        {
            "input_ids": inputs["input_ids"].contiguous(),
            "pixel_values": inputs["pixel_values"].contiguous(),
            "last_hidden_state": outputs.last_hidden_state.contiguous(),
            "logits_per_image": outputs.logits_per_image.contiguous(),
        },
        tmp_path / "expected.safetensors",
    )

    result = run_in_fresh_process(REMOTE_LOAD, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = re.search(r"LOADED (\S+) (\S+)", result.stdout)  # after transformers' trust prompt, declined
    assert loaded, result.stdout[-3000:]
    model_module, processor_module = loaded.groups()
    assert model_module.startswith("transformers_modules.") and model_module.endswith("modeling_mamo")
    assert processor_module.startswith("transformers_modules.") and processor_module.endswith("processing_mamo")


# --------------------------------------------------------------------------------------------------------------------
# Every head, and the zero-shot pipeline
# --------------------------------------------------------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path):
    return save_checkpoint_and_images(tmp_path)


REMOTE_HEADS = textwrap.dedent(
    """
    import json, sys
    sys.modules["mamo_hf"] = None  # the folder's own code must suffice
    from PIL import Image
    import transformers

    folder = sys.argv[1]
    loaded = {}
    for auto_class in json.load(open(f"{folder}/config.json"))["auto_map"]:
        if auto_class.startswith("AutoModel"):
            model = getattr(transformers, auto_class).from_pretrained(folder, trust_remote_code=True)
            loaded[auto_class] = type(model).__name__
    classify = transformers.pipeline("zero-shot-image-classification", model=folder, trust_remote_code=True)
    results = classify(Image.open(f"{folder}/image0.png"), candidate_labels=json.load(open(f"{folder}/labels.json")))
    print("RESULT", json.dumps({"loaded": loaded, "pipeline": results}))
    """
)


def test_every_head_and_the_pipeline_load_with_trust_remote_code_without_the_package(saved):
    (saved / "labels.json").write_text(json.dumps(LABELS))
    result = run_in_fresh_process(REMOTE_HEADS, saved)
    assert result.returncode == 0, result.stderr[-3000:]
    remote = json.loads(result.stdout.split("RESULT ", 1)[1])
    assert remote["loaded"] == {
        "AutoModel": "MamoModel",
        "AutoModelForPreTraining": "MamoForPreTraining",
        "AutoModelForVisualQuestionAnswering": "MamoForQuestionAnswering",
        "AutoModelForZeroShotImageClassification": "MamoForImageTextRetrieval",
        "AutoModelForSequenceClassification": "MamoForVisualReasoning",
    }
    local = pipeline("zero-shot-image-classification", model=str(saved))(images(saved)[0], candidate_labels=LABELS)
    assert [entry["label"] for entry in remote["pipeline"]] == [entry["label"] for entry in local]
    assert [entry["score"] for entry in remote["pipeline"]] == pytest.approx([entry["score"] for entry in local])
