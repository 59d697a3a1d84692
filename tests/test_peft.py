"""Parameter-efficient fine-tuning with PEFT's LoRA (README, "Parameter-efficient fine-tuning (LoRA)"): the task
heads train with adapters on the encoders' `q_proj`/`k_proj`/`v_proj`/`o_proj`/`fc1`/`fc2` (or the fusion
encoder's only, through a regex) and the head in `modules_to_save`; every base weight stays bit-identical; the
adapters save and reload onto a fresh base; `merge_and_unload` gives a plain MAMO model that saves and reloads."""

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Callable

import pytest
import torch
from helpers import random_pairs, tiny_config
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file
from transformers import AutoModel, AutoModelForVisualQuestionAnswering, Trainer, TrainingArguments

import mamo_hf  # noqa: F401  (registers MAMO with the Auto classes)
from mamo_hf import (
    MamoForImageTextRetrieval,
    MamoForPreTraining,
    MamoForQuestionAnswering,
    MamoForVisualReasoning,
    MamoModel,
)

# The README's recommendation: every linear layer of the transformer blocks of the image, text and fusion encoders
# (names match as suffixes), and a lighter variant, the fusion encoder's query and value projections (a regex,
# matched against the whole module name, e.g. `mamo.fusion_encoder.layers.0.attention.q_proj`).
ENCODER_LINEAR_LAYERS = ["q_proj", "k_proj", "v_proj", "o_proj", "fc1", "fc2"]
FUSION_QUERY_VALUE = r".*fusion_encoder.*\.(q_proj|v_proj)"
ANSWERS = {0: "yes", 1: "no", 2: "red"}
RANK = 4
STEPS = 6


def answer_scores(batch_size: int = 4) -> torch.Tensor:
    return torch.rand(batch_size, len(ANSWERS), generator=torch.Generator().manual_seed(2))


def image_pairs(config, batch_size: int = 4) -> dict:
    batch = random_pairs(config, batch_size, seed=1)
    size = config.vision_config.image_size
    batch["pixel_values"] = torch.randn(batch_size, 2, 3, size, size, generator=torch.Generator().manual_seed(3))
    return batch


@dataclass
class Task:
    """A fine-tunable head: how to load it, feed it, train it and read its outputs."""

    model_class: type
    modules_to_save: list[str]
    inputs: Callable[[object], dict]  # config -> the inputs of a batch, without targets
    targets: Callable[[], dict]  # the training targets of that batch (fresh objects each call)
    outputs: Callable[[object], torch.Tensor]  # model output -> the tensor that must be reproduced
    load_kwargs: dict


TASKS = {
    "vqa": Task(
        MamoForQuestionAnswering,
        ["vqa_head"],
        lambda config: random_pairs(config, seed=1),
        lambda: {"labels": answer_scores()},
        lambda output: output.logits,
        {"id2label": ANSWERS},
    ),
    # The ITC projections are trained too (ITC is half the fine-tuning loss); τ stays as pre-trained.
    "retrieval": Task(
        MamoForImageTextRetrieval,
        ["itm_head", "image_projection", "text_projection"],
        lambda config: random_pairs(config, seed=1),
        lambda: {"image_ids": torch.tensor([0, 0, 1, 2]), "generator": torch.Generator().manual_seed(0)},
        lambda output: torch.cat([output.itm_logits.flatten(), output.logits_per_image.flatten()]),
        {},
    ),
    "nlvr2": Task(
        MamoForVisualReasoning,
        ["nlvr_head"],
        image_pairs,
        lambda: {"labels": torch.tensor([0, 1, 1, 0])},
        lambda output: output.logits,
        {},
    ),
}
CASES = [
    ("vqa", "encoder-linear"),
    ("retrieval", "encoder-linear"),
    ("nlvr2", "encoder-linear"),
    ("vqa", "fusion-query-value"),
    ("retrieval", "fusion-query-value"),
]
TARGETS = {"encoder-linear": ENCODER_LINEAR_LAYERS, "fusion-query-value": FUSION_QUERY_VALUE}


def lora_config(target: str, task: Task) -> LoraConfig:
    return LoraConfig(
        r=RANK, lora_alpha=2 * RANK, target_modules=TARGETS[target], modules_to_save=task.modules_to_save
    )


def base_name(peft_name: str) -> str:
    """The plain model's name of a parameter of the PEFT model (the frozen copy for a wrapped module)."""
    name = peft_name.removeprefix("base_model.model.")
    return name.replace(".base_layer.", ".").replace(".original_module.", ".")


def is_adapter_or_head(peft_name: str) -> bool:
    return any(part in peft_name for part in (".lora_A.", ".lora_B.", ".modules_to_save."))


def targeted_modules(model: torch.nn.Module, target: str) -> list[str]:
    """The module names LoRA should wrap, listed independently of PEFT's matching."""
    suffixes = ("q_proj", "v_proj") if target == "fusion-query-value" else tuple(ENCODER_LINEAR_LAYERS)
    encoders = (
        ("fusion_encoder",) if target == "fusion-query-value" else ("image_encoder", "text_encoder", "fusion_encoder")
    )
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and name.endswith(suffixes) and name.split(".")[1] in encoders
    ]


@pytest.fixture(scope="module")
def pretrained_dir(tmp_path_factory):
    """A pre-training checkpoint: the start of every fine-tuning (task heads other than ITM start from scratch)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("pretrained")
    MamoForPreTraining(tiny_config()).save_pretrained(path)
    return path


def load_base(task: Task, pretrained_dir, seed: int):
    torch.manual_seed(seed)  # a new head's initialisation
    return task.model_class.from_pretrained(pretrained_dir, **task.load_kwargs)


def run(model, task: Task, inputs: dict) -> torch.Tensor:
    with torch.no_grad():
        return task.outputs(model.eval()(**inputs))


def training_loss(model, task: Task, inputs: dict) -> torch.Tensor:
    return model.train()(**inputs, **task.targets()).loss


@pytest.fixture(scope="module", params=CASES, ids=["-".join(case) for case in CASES])
def finetuned(request, pretrained_dir, tmp_path_factory):
    """A head wrapped with LoRA, trained a few steps with Adam on one batch, its adapters saved."""
    task_name, target = request.param
    task = TASKS[task_name]
    base = load_base(task, pretrained_dir, seed=0)
    inputs = task.inputs(base.config)
    base_outputs = run(base, task, inputs)
    expected_targets = targeted_modules(base, target)
    plain_names = [name for name, _ in base.named_parameters()]
    model = get_peft_model(base, lora_config(target, task))
    wrapped_outputs = run(model, task, inputs)
    initial = {name: parameter.detach().clone() for name, parameter in model.named_parameters()}
    initial_buffers = {name: buffer.clone() for name, buffer in model.named_buffers()}
    with torch.no_grad():
        loss_before = training_loss(model, task, inputs).item()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(STEPS):
        training_loss(model, task, inputs).backward()
        optimizer.step()
        optimizer.zero_grad()
    with torch.no_grad():
        loss_after = training_loss(model, task, inputs).item()
    adapter_dir = tmp_path_factory.mktemp("adapter")
    model.save_pretrained(adapter_dir)
    return SimpleNamespace(
        task=task,
        target=target,
        model=model,
        inputs=inputs,
        base_outputs=base_outputs,
        wrapped_outputs=wrapped_outputs,
        outputs=run(model, task, inputs),
        expected_targets=expected_targets,
        plain_names=plain_names,
        initial=initial,
        initial_buffers=initial_buffers,
        losses=(loss_before, loss_after),
        adapter_dir=adapter_dir,
        pretrained_dir=pretrained_dir,
    )


def test_lora_wraps_exactly_the_targeted_projections_and_trains_a_small_fraction(finetuned):
    model, task = finetuned.model, finetuned.task
    wrapped = sorted(name.removeprefix("base_model.model.") for name in model.targeted_module_names)
    assert wrapped == sorted(finetuned.expected_targets)
    trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    assert trainable and all(is_adapter_or_head(name) for name in trainable)
    # Frozen: the plain model's parameters, each exactly once (the wrapped modules' and the heads' original copies).
    frozen = [base_name(name) for name, parameter in model.named_parameters() if not parameter.requires_grad]
    assert sorted(frozen) == sorted(finetuned.plain_names)
    # r · (in + out) per wrapped projection, plus the heads.
    base = model.get_base_model()
    adapters = sum(
        RANK * (module.in_features + module.out_features)
        for name, module in base.named_modules()
        if name in finetuned.expected_targets
    )
    heads = sum(
        parameter.numel()
        for name, parameter in model.named_parameters()
        if ".original_module." in name and any(f"{head}." in name for head in task.modules_to_save)
    )
    trainable_count, total = model.get_nb_trainable_parameters()
    assert trainable_count == adapters + heads
    # The adapters are a small fraction even of this 64-wide model (r / width = 1/16): 9 % on every projection,
    # under 1 % on the fusion encoder's query and value (the new heads are as large as they would be without LoRA).
    assert adapters / total < (0.1 if finetuned.target == "encoder-linear" else 0.01)
    # LoRA's B starts at zero: wrapping changes no output.
    torch.testing.assert_close(finetuned.wrapped_outputs, finetuned.base_outputs, rtol=0, atol=0)


def test_training_moves_only_the_adapters_and_the_head(finetuned):
    loss_before, loss_after = finetuned.losses
    assert loss_after < loss_before
    for name, parameter in finetuned.model.named_parameters():
        if is_adapter_or_head(name):
            assert not torch.equal(parameter, finetuned.initial[name]), f"{name} did not train"
        else:
            assert torch.equal(parameter, finetuned.initial[name]), f"base weight {name} changed"
    for name, buffer in finetuned.model.named_buffers():
        assert torch.equal(buffer, finetuned.initial_buffers[name]), f"buffer {name} changed"
    assert not torch.allclose(finetuned.outputs, finetuned.base_outputs)


def test_saved_adapters_reproduce_the_outputs_on_a_fresh_base(finetuned):
    saved = load_file(finetuned.adapter_dir / "adapter_model.safetensors")
    assert saved and all(
        ".lora_" in key or any(f"{head}." in key for head in finetuned.task.modules_to_save) for key in saved
    )
    assert sum(tensor.numel() for tensor in saved.values()) == finetuned.model.get_nb_trainable_parameters()[0]
    fresh = load_base(finetuned.task, finetuned.pretrained_dir, seed=1)  # new heads start elsewhere
    loaded = PeftModel.from_pretrained(fresh, finetuned.adapter_dir)
    assert not any(parameter.requires_grad for parameter in loaded.parameters())  # inference unless is_trainable
    torch.testing.assert_close(run(loaded, finetuned.task, finetuned.inputs), finetuned.outputs, rtol=0, atol=0)


def test_merged_model_is_a_plain_mamo_model_that_saves_and_reloads(finetuned, tmp_path):
    task = finetuned.task
    fresh = load_base(task, finetuned.pretrained_dir, seed=1)
    merged = PeftModel.from_pretrained(fresh, finetuned.adapter_dir).merge_and_unload()
    assert type(merged) is task.model_class
    assert [name for name, _ in merged.named_parameters()] == finetuned.plain_names
    merged_outputs = run(merged, task, finetuned.inputs)
    torch.testing.assert_close(merged_outputs, finetuned.outputs, rtol=1e-5, atol=1e-5)

    merged.save_pretrained(tmp_path)
    reloaded, info = task.model_class.from_pretrained(tmp_path, output_loading_info=True)
    assert not (info["missing_keys"] or info["unexpected_keys"] or info["mismatched_keys"])
    torch.testing.assert_close(run(reloaded, task, finetuned.inputs), merged_outputs, rtol=0, atol=0)
    if task.model_class is MamoForQuestionAnswering:
        auto = AutoModelForVisualQuestionAnswering.from_pretrained(tmp_path)
        assert type(auto) is MamoForQuestionAnswering and auto.config.id2label == ANSWERS
        torch.testing.assert_close(run(auto, task, finetuned.inputs), merged_outputs, rtol=0, atol=0)
    backbone = AutoModel.from_pretrained(tmp_path).eval()  # the merged encoders alone
    assert type(backbone) is MamoModel
    pair = random_pairs(merged.config, seed=4)
    with torch.no_grad():
        torch.testing.assert_close(backbone(**pair).last_hidden_state, merged.mamo(**pair).last_hidden_state)


def test_trainer_fine_tunes_the_adapters_and_saves_only_them(pretrained_dir, tmp_path):
    """The README's recipe: `Trainer` on a LoRA-wrapped head, `save_model`, reload onto a fresh base, merge."""
    task = TASKS["vqa"]
    base = load_base(task, pretrained_dir, seed=0)
    model = get_peft_model(base, lora_config("fusion-query-value", task))
    initial = {name: parameter.detach().clone() for name, parameter in model.named_parameters()}

    class Questions(torch.utils.data.Dataset):
        batch = {**random_pairs(base.config, batch_size=8, seed=5), "labels": answer_scores(8)}

        def __len__(self):
            return 8

        def __getitem__(self, index):
            return {name: value[index] for name, value in self.batch.items()}

    args = TrainingArguments(
        output_dir=str(tmp_path / "run"),
        per_device_train_batch_size=4,
        max_steps=2,
        learning_rate=1e-2,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        remove_unused_columns=False,
    )
    trainer = Trainer(model=model, args=args, train_dataset=Questions())
    trainer.train()
    for name, parameter in model.named_parameters():
        assert torch.equal(parameter, initial[name]) != is_adapter_or_head(name), name
    trainer.save_model(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    assert not (tmp_path / "adapter" / "model.safetensors").exists()  # the base is not copied
    inputs = task.inputs(base.config)
    expected = run(model, task, inputs)
    merged = PeftModel.from_pretrained(
        load_base(task, pretrained_dir, seed=1), tmp_path / "adapter"
    ).merge_and_unload()
    torch.testing.assert_close(run(merged, task, inputs), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("use_reentrant", [False, True])
def test_gradient_checkpointing_reaches_every_adapter(pretrained_dir, use_reentrant):
    """With frozen embeddings, reentrant checkpointing needs the layers' inputs to require grad: transformers hooks
    every tower's `get_input_embeddings` (the patch embedding of the image encoder, the word embeddings of the text
    encoder), so adapters in all three encoders still get gradients."""
    task = TASKS["nlvr2"]
    base = load_base(task, pretrained_dir, seed=0)
    base.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": use_reentrant})
    model = get_peft_model(base, lora_config("encoder-linear", task))
    training_loss(model, task, task.inputs(base.config)).backward()
    lora_b = {name: parameter.grad for name, parameter in model.named_parameters() if ".lora_B." in name}
    assert len(lora_b) == 36  # 3 encoders × 2 layers × 6 projections
    assert all(grad is not None and grad.abs().sum() > 0 for grad in lora_b.values())
