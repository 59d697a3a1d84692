"""MAMO's pre-training step against transformers' FLAVA, and MAMO's encoders against ViT and BERT, at equal sizes.

    python benchmarks/peer_step.py --size small                         # fp32, all cores, median of 5 repeats
    python benchmarks/peer_step.py --size small --dtype bf16             # torch.autocast(bfloat16), fp32 weights
    python benchmarks/peer_step.py --size tiny --repeats 2 --memory      # also peak memory, one subprocess per model
    python benchmarks/peer_step.py --size base --flava-codebook          # FLAVA also runs its image codebook

Sizes (`--size`; each model gets the same widths, heads, MLP and layer counts):

    tiny   64 px / patch 8,   width 64, 4 heads, MLP 128;    2 image, 2 text, 2 fusion layers; batch 16, 16 tokens
    small  128 px / patch 16, width 384, 6 heads, MLP 1536;  6 image, 4 text, 4 fusion layers; batch 32, 32 tokens
    base   256 px / patch 16, width 768, 12 heads, MLP 3072; 12 image, 6 text, 6 fusion layers; batch 8, 32 tokens

(vocabulary 1000 for tiny, 30522 for small and base). Measured in one process, all models interleaved round-robin
after one warm-up step each, median of `--repeats` (each `--steps-per-repeat` steps long):

1. The full pre-training optimizer step: forward, backward, `AdamW.step()` and, for MAMO, `update_teacher()`.
   - `MamoForPreTraining` with its five objectives (ITC, ITM, MLM, MIM, MRM; the config's default weights);
   - `MamoForPreTraining` with `mim_weight=0, mrm_weight=0` (ITC, ITM, MLM: no teacher pass, no masked image);
   - `MamoForPreTraining` with its five objectives and activation checkpointing (`activation_checkpointing_enable()`:
     each layer's activations recomputed in the backward; measured for its peak memory);
   - transformers' `FlavaForPreTraining`, given what its losses need: `input_ids_masked` and `mlm_labels` (15% of the
     words masked), `bool_masked_pos` (75/196 of the patches, FLAVA's processor ratio), `itm_labels` (every other pair
     labelled mismatched: FLAVA computes its contrastive and MMM losses on the matched half) and `return_loss=True`;
     its encoders take the MAMO sub-configs' dropout (0.1 in the text and fusion layers, where FLAVA's default is 0).
     On paired data FLAVA runs its image and text encoders twice (clean and masked inputs) and its multimodal encoder
     once, and computes the global contrastive, ITM, MMM-image and MMM-text losses (its unimodal MIM and MLM losses are
     only computed when the multimodal encoder does not run). The MMM-image targets are visual tokens from a frozen
     DALL-E-style image codebook; by default the codebook is not built (`init_codebook=False`) and random visual tokens
     are passed as `mim_labels`, as if tokenised offline, so the codebook's forward pass is not counted.
     `--flava-codebook` builds the codebook with random weights (nothing is downloaded) and computes the visual tokens
     from `codebook_pixel_values` every step. FLAVA's attention is transformers' eager implementation (FLAVA supports
     no other); MAMO, ViT and BERT use SDPA.
   Reported: seconds per step, pairs per second, GFLOP per pair (one step, forward and backward, counted by
   `torch.utils.flop_counter.FlopCounterMode` in an extra step that uses the math SDPA kernel, so that attention is
   counted on CPU too; the timed steps use the default kernels; the optimizer's element-wise work is not counted),
   achieved GFLOP/s and its fraction of the matmul rate of this run: `torch.mm` of [batch · image tokens, width] ×
   [width, MLP width] in the step's dtype, timed in the same round-robin.
   With `--memory`, each of these models also runs alone in a subprocess (this script with `--only`, two steps)
   that reports its peak memory. On CPU that is the peak resident set (Linux's VmHWM: the process's own part of
   `ru_maxrss`, which would also count the parent's resident set at the time of the fork), its high-water mark first
   reset to the current usage (`/proc/self/clear_refs`) so that the imports' transient peak does not hide the
   model's; it includes the process's baseline (Python, torch, transformers, the batch: about 0.7 GiB, reported
   separately). On CUDA it is `torch.cuda.max_memory_allocated`.
2. The encoders alone, forward and backward of the mean of the last hidden state: `MamoVisionModel` against
   `ViTModel` (no pooler) and `MamoTextModel` against `BertModel` (no pooler), built from the same MAMO sub-config
   (width, heads, MLP, layers, patch and image size, dropout, LayerNorm epsilon), all with SDPA attention. The target
   is a MAMO / reference time ratio of at most 1.05.

Prints two markdown tables and writes `benchmarks/results/peer_step_<device>.json` (`--output` to write elsewhere).
"""

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import transformers
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode
from transformers import BertConfig, BertModel, FlavaConfig, FlavaForPreTraining, ViTConfig, ViTModel

from mamo_hf import MamoConfig, MamoForPreTraining, MamoTextModel, MamoVisionModel

PAD_ID, CLS_ID, SEP_ID, MASK_ID = 0, 101, 102, 103  # bert-base-uncased's, also inside the tiny vocabulary
FIRST_WORD_ID = 104
FLAVA_TEXT_MASK_RATIO = 0.15
FLAVA_IMAGE_MASK_RATIO = 75 / 196  # FlavaImageProcessor masks 75 of the 196 patches of a 224-px image
CODEBOOK_DOWNSAMPLING = 8  # FLAVA's image codebook maps an image of 8·g px to a g × g grid of visual tokens
MEMORY_STEPS = 2  # the second step runs with the optimizer state in place: the steady-state peak
ENCODER_FIELDS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "layer_norm_eps",
)


@dataclass(frozen=True)
class Size:
    image_size: int
    patch_size: int
    width: int
    heads: int
    mlp: int
    image_layers: int
    text_layers: int
    fusion_layers: int
    batch_size: int
    text_length: int
    vocab_size: int
    image_vocab_size: int  # FLAVA's visual tokens: the classes of its MMM-image head
    codebook_width: int  # FLAVA's image codebook (256 in the released one)

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


SIZES = {
    "tiny": Size(
        image_size=64, patch_size=8, width=64, heads=4, mlp=128, image_layers=2, text_layers=2, fusion_layers=2,
        batch_size=16, text_length=16, vocab_size=1000, image_vocab_size=1024, codebook_width=32,
    ),
    "small": Size(
        image_size=128, patch_size=16, width=384, heads=6, mlp=1536, image_layers=6, text_layers=4, fusion_layers=4,
        batch_size=32, text_length=32, vocab_size=30522, image_vocab_size=8192, codebook_width=256,
    ),
    "base": Size(
        image_size=256, patch_size=16, width=768, heads=12, mlp=3072, image_layers=12, text_layers=6, fusion_layers=6,
        batch_size=8, text_length=32, vocab_size=30522, image_vocab_size=8192, codebook_width=256,
    ),
}  # fmt: skip


@dataclass
class Setup:
    """What every model of a run shares: the size, the device, the step's dtype and one batch of pairs (on CPU)."""

    size: Size
    device: str
    dtype: torch.dtype
    batch: dict[str, torch.Tensor]
    flava_codebook: bool

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.split(":")[0], dtype=self.dtype)

    def on_device(self, inputs: dict) -> dict:
        return {name: value.to(self.device) if torch.is_tensor(value) else value for name, value in inputs.items()}


@dataclass
class Workload:
    """One timed unit of work (`step`, returning the model output) and what it processes."""

    name: str
    label: str
    step: Callable[[], object]
    examples: int | None  # pairs, images or texts per step; None for the matmul probe
    parameters: int  # trainable


# --------------------------------------------------------------------------------------------------------------------
# Inputs and configs
# --------------------------------------------------------------------------------------------------------------------


def make_batch(size: Size) -> dict[str, torch.Tensor]:
    """Random pairs: `[CLS] words [SEP]` captions without padding, and normal-distributed images."""
    generator = torch.Generator().manual_seed(0)
    batch_size = size.batch_size
    words = torch.randint(FIRST_WORD_ID, size.vocab_size, (batch_size, size.text_length - 2), generator=generator)
    input_ids = torch.cat([torch.full((batch_size, 1), CLS_ID), words, torch.full((batch_size, 1), SEP_ID)], dim=1)
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "pixel_values": torch.randn(batch_size, 3, size.image_size, size.image_size, generator=generator),
    }


def random_mask(rows: int, length: int, ratio: float, generator: torch.Generator) -> torch.Tensor:
    """A boolean mask `[rows, length]` with `round(ratio · length)` positions set in every row."""
    ranks = torch.rand(rows, length, generator=generator).argsort(dim=1).argsort(dim=1)
    return ranks < round(ratio * length)


def mamo_config(size: Size, attention_dropout: float | None = None, **objective_weights) -> MamoConfig:
    """MAMO at `size`; `attention_dropout` replaces the text and fusion encoders' attention dropout (BERT's 0.1)."""
    encoder = {"hidden_size": size.width, "num_attention_heads": size.heads, "intermediate_size": size.mlp}
    dropout = {} if attention_dropout is None else {"attention_probs_dropout_prob": attention_dropout}
    return MamoConfig(
        vision_config={
            **encoder,
            "num_hidden_layers": size.image_layers,
            "image_size": size.image_size,
            "patch_size": size.patch_size,
        },
        text_config={
            **encoder,
            "num_hidden_layers": size.text_layers,
            "vocab_size": size.vocab_size,
            "pad_token_id": PAD_ID,
            "cls_token_id": CLS_ID,
            "sep_token_id": SEP_ID,
            "mask_token_id": MASK_ID,
            **dropout,
        },
        fusion_encoder_config={**encoder, "num_hidden_layers": size.fusion_layers, **dropout},
        **objective_weights,
    )


def encoder_fields(config) -> dict:
    """The fields that size an encoder and its regularisation, copied from a MAMO sub-config to a peer's config."""
    return {name: getattr(config, name) for name in ENCODER_FIELDS}


def flava_config(size: Size, with_codebook: bool) -> FlavaConfig:
    mamo = mamo_config(size)
    return FlavaConfig(
        image_config={
            **encoder_fields(mamo.vision_config),
            "image_size": size.image_size,
            "patch_size": size.patch_size,
            "vocab_size": size.image_vocab_size,
        },
        text_config={**encoder_fields(mamo.text_config), "vocab_size": size.vocab_size, "pad_token_id": PAD_ID},
        multimodal_config=encoder_fields(mamo.fusion_encoder_config),
        image_codebook_config={"hidden_size": size.codebook_width, "vocab_size": size.image_vocab_size},
        init_codebook=with_codebook,
        hidden_size=size.width,
        projection_dim=mamo.projection_dim,
    )


def flava_inputs(setup: Setup) -> dict:
    """What `FlavaForPreTraining` needs for its losses, built from the shared batch."""
    size, batch = setup.size, setup.batch
    generator = torch.Generator().manual_seed(1)
    input_ids, batch_size = batch["input_ids"], size.batch_size
    word_mask = random_mask(batch_size, size.text_length - 2, FLAVA_TEXT_MASK_RATIO, generator)
    no_special = torch.zeros(batch_size, 1, dtype=torch.bool)
    text_mask = torch.cat([no_special, word_mask, no_special], dim=1)  # never [CLS] or [SEP]
    image_mask = random_mask(batch_size, size.num_patches, FLAVA_IMAGE_MASK_RATIO, generator)
    inputs = {
        **batch,
        "input_ids_masked": input_ids.masked_fill(text_mask, MASK_ID),
        "mlm_labels": input_ids.masked_fill(~text_mask, -100),
        "bool_masked_pos": image_mask,
        "itm_labels": (torch.arange(batch_size) % 2 == 0).long(),
        "return_loss": True,
    }
    if setup.flava_codebook:
        side = CODEBOOK_DOWNSAMPLING * size.image_size // size.patch_size
        inputs["codebook_pixel_values"] = torch.rand(batch_size, 3, side, side, generator=generator)
    else:
        visual_tokens = torch.randint(size.image_vocab_size, (batch_size, size.num_patches), generator=generator)
        inputs["mim_labels"] = visual_tokens.masked_fill(~image_mask, -100)
    return setup.on_device(inputs)


# --------------------------------------------------------------------------------------------------------------------
# Workloads
# --------------------------------------------------------------------------------------------------------------------


def trainable_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [parameter for parameter in model.parameters() if parameter.requires_grad]


def training_step(model, inputs, setup, compute_loss, optimizer=None, after_step=None) -> Callable[[], object]:
    def step():
        model.zero_grad(set_to_none=True)
        with setup.autocast():
            output = model(**inputs)
        compute_loss(output).backward()
        if optimizer is not None:
            optimizer.step()
        if after_step is not None:
            after_step()
        return output

    return step


def pretraining_workload(name, label, model, inputs, setup, after_step=None) -> Workload:
    model.to(setup.device).train()
    parameters = trainable_parameters(model)
    optimizer = torch.optim.AdamW(parameters, lr=1e-4, weight_decay=0.01)
    step = training_step(model, inputs, setup, lambda output: output.loss, optimizer, after_step)
    return Workload(name, label, step, setup.size.batch_size, sum(p.numel() for p in parameters))


def encoder_workload(name, label, model, inputs, setup) -> Workload:
    model.to(setup.device).train()
    model.set_attn_implementation("sdpa")
    step = training_step(model, setup.on_device(inputs), setup, lambda output: output.last_hidden_state.float().mean())
    return Workload(name, label, step, setup.size.batch_size, sum(p.numel() for p in trainable_parameters(model)))


def mamo_pretraining(
    name: str, label: str, checkpointing: bool = False, **objective_weights
) -> Callable[[Setup], Workload]:
    def build(setup: Setup) -> Workload:
        torch.manual_seed(0)
        model = MamoForPreTraining(mamo_config(setup.size, **objective_weights))
        model.set_attn_implementation("sdpa")
        if checkpointing:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        inputs = {**setup.on_device(setup.batch), "generator": torch.Generator(setup.device).manual_seed(0)}
        return pretraining_workload(name, label, model, inputs, setup, after_step=model.update_teacher)

    return build


def flava_pretraining(setup: Setup) -> Workload:
    torch.manual_seed(0)
    model = FlavaForPreTraining(flava_config(setup.size, setup.flava_codebook))
    label = "FLAVA (transformers)" + (", with codebook" if setup.flava_codebook else "")
    return pretraining_workload("flava", label, model, flava_inputs(setup), setup)


def mamo_image_encoder(setup: Setup) -> Workload:
    torch.manual_seed(0)
    model = MamoVisionModel(mamo_config(setup.size).vision_config)
    return encoder_workload("mamo-image-encoder", "MamoVisionModel", model, image_inputs(setup), setup)


def vit(setup: Setup) -> Workload:
    vision = mamo_config(setup.size).vision_config
    config = ViTConfig(
        **encoder_fields(vision), image_size=vision.image_size, patch_size=vision.patch_size, qkv_bias=vision.qkv_bias
    )
    torch.manual_seed(0)
    return encoder_workload("vit", "ViTModel", ViTModel(config, add_pooling_layer=False), image_inputs(setup), setup)


def mamo_text_encoder(setup: Setup) -> Workload:
    torch.manual_seed(0)
    model = MamoTextModel(mamo_config(setup.size).text_config)
    return encoder_workload("mamo-text-encoder", "MamoTextModel", model, text_inputs(setup), setup)


def bert(setup: Setup) -> Workload:
    text = mamo_config(setup.size).text_config
    config = BertConfig(
        **encoder_fields(text),
        vocab_size=text.vocab_size,
        max_position_embeddings=text.max_position_embeddings,
        type_vocab_size=text.type_vocab_size,
        pad_token_id=text.pad_token_id,
    )
    torch.manual_seed(0)
    return encoder_workload("bert", "BertModel", BertModel(config, add_pooling_layer=False), text_inputs(setup), setup)


def image_inputs(setup: Setup) -> dict:
    return {"pixel_values": setup.batch["pixel_values"]}


def text_inputs(setup: Setup) -> dict:
    return {"input_ids": setup.batch["input_ids"], "attention_mask": setup.batch["attention_mask"]}


def matmul_probe(setup: Setup) -> Workload:
    """`torch.mm` of an MLP-shaped product, [batch · image tokens, width] × [width, MLP width]: the machine's rate."""
    size = setup.size
    generator = torch.Generator().manual_seed(2)
    rows = size.batch_size * (1 + size.num_patches)
    left = torch.randn(rows, size.width, generator=generator).to(setup.device, setup.dtype)
    right = torch.randn(size.width, size.mlp, generator=generator).to(setup.device, setup.dtype)
    label = f"torch.mm [{rows}×{size.width}]·[{size.width}×{size.mlp}]"
    return Workload("matmul", label, lambda: torch.mm(left, right), None, 0)


PRETRAINING = {
    "mamo": mamo_pretraining("mamo", "MAMO, 5 objectives"),
    "mamo-itc-itm-mlm": mamo_pretraining("mamo-itc-itm-mlm", "MAMO, ITC+ITM+MLM", mim_weight=0, mrm_weight=0),
    "mamo-checkpointed": mamo_pretraining("mamo-checkpointed", "MAMO, 5 objectives, activation checkpointing", True),
    # On CPU, SDPA in training with attention dropout falls back to its math kernel (no fused kernel with dropout).
    "mamo-no-attention-dropout": mamo_pretraining(
        "mamo-no-attention-dropout", "MAMO, 5 objectives, no attention dropout", attention_dropout=0.0
    ),
    "flava": flava_pretraining,
}
ENCODER_PAIRS = {"image": (mamo_image_encoder, vit), "text": (mamo_text_encoder, bert)}
BUILDERS = {
    **PRETRAINING,
    "mamo-image-encoder": mamo_image_encoder,
    "vit": vit,
    "mamo-text-encoder": mamo_text_encoder,
    "bert": bert,
}


# --------------------------------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------------------------------


def synchronize(device: str):
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def count_flops(workload: Workload) -> tuple[int, object]:
    """FLOPs of one step (matmuls, convolutions and attention, forward and backward) and that step's output."""
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        output = workload.step()
    return counter.get_total_flops(), output


def computed_losses(output) -> list[str]:
    """The names of the losses a pre-training output holds (FLAVA keeps them in `loss_info`)."""
    if hasattr(output, "loss_info"):
        return [name for name, value in output.loss_info.items() if value is not None]
    return [name.removeprefix("loss_") for name, value in output.items() if name.startswith("loss_")]


def time_interleaved(workloads: list[Workload], repeats: int, steps_per_repeat: int, device: str):
    """Seconds per step of each workload in each repeat, the workloads taking turns after one warm-up step each."""
    for workload in workloads:
        workload.step()
    seconds = {workload.name: [] for workload in workloads}
    for _ in range(repeats):
        for workload in workloads:
            synchronize(device)
            started = time.perf_counter()
            for _ in range(steps_per_repeat):
                workload.step()
            synchronize(device)
            seconds[workload.name].append((time.perf_counter() - started) / steps_per_repeat)
    return seconds


def peak_memory_gib(device: str) -> float:
    """Peak accelerator memory allocated, or on CPU the peak resident set of this process (Linux's VmHWM: unlike
    `ru_maxrss`, it does not include the resident set the parent process had when it started this one)."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated(device) / 2**30
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) / 2**20  # KiB


def reset_peak_memory(device: str):
    """Restart the peak from the current usage, so that the imports' transient peak does not hide the model's."""
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)
        return
    with contextlib.suppress(OSError):  # Linux 4.0+; elsewhere the peak since start-up is kept
        Path("/proc/self/clear_refs").write_text("5")


def report_peak_memory(name: str, setup: Setup):
    """The `--only` mode: build one model, run it, print its peak memory as one JSON line."""
    reset_peak_memory(setup.device)
    baseline = peak_memory_gib(setup.device)
    workload = BUILDERS[name](setup)
    for _ in range(MEMORY_STEPS):
        workload.step()
    synchronize(setup.device)
    print(json.dumps({"peak_memory_gib": peak_memory_gib(setup.device), "baseline_gib": baseline}))


def peak_memory_in_subprocess(name: str, args) -> dict:
    command = [sys.executable, __file__, "--only", name, "--size", args.size, "--dtype", args.dtype]
    command += ["--threads", str(args.threads), "--device", args.device]
    command += ["--flava-codebook"] if args.flava_codebook else []
    completed = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def record(workload: Workload, seconds: list[float], flops: int, matmul_flops_per_second: float | None) -> dict:
    median = statistics.median(seconds)
    result = {
        "label": workload.label,
        "seconds_per_step": median,
        "seconds_per_step_by_repeat": seconds,
        "trainable_parameters": workload.parameters,
        "gflop_per_step": flops / 1e9,
        "gflop_per_second": flops / 1e9 / median,
    }
    if matmul_flops_per_second is not None:
        result["fraction_of_matmul"] = flops / median / matmul_flops_per_second
    if workload.examples is not None:
        result["examples_per_step"] = workload.examples
        result["examples_per_second"] = workload.examples / median
        result["gflop_per_example"] = flops / 1e9 / workload.examples
    return result


# --------------------------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------------------------


def pretraining_table(results: dict) -> str:
    lines = [
        "| model | losses | trainable params (M) | s/step | pairs/s | GFLOP/pair | GFLOP/s | of matmul "
        "| peak memory GiB (over baseline) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in results["pretraining_step"].values():
        memory = "—"
        if "peak_memory_gib" in entry:
            memory = f"{entry['peak_memory_gib']:.2f} (+{entry['peak_memory_gib'] - entry['memory_baseline_gib']:.2f})"
        lines.append(
            f"| {entry['label']} | {'+'.join(entry['losses'])} | {entry['trainable_parameters'] / 1e6:.1f} "
            f"| {entry['seconds_per_step']:.3f} | {entry['examples_per_second']:.1f} "
            f"| {entry['gflop_per_example']:.2f} | {entry['gflop_per_second']:.1f} "
            f"| {entry['fraction_of_matmul']:.0%} | {memory} |"
        )
    return "\n".join(lines)


def encoder_table(results: dict) -> str:
    lines = [
        "| encoder | reference | MAMO s | reference s | MAMO / reference | GFLOP MAMO / reference | MAMO of matmul |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, entry in results["encoders"].items():
        mamo, reference = entry["mamo"], entry["reference"]
        lines.append(
            f"| {kind}: {mamo['label']} | {reference['label']} | {mamo['seconds_per_step']:.4f} "
            f"| {reference['seconds_per_step']:.4f} | {entry['mamo_over_reference']:.3f} "
            f"| {mamo['gflop_per_step']:.2f} / {reference['gflop_per_step']:.2f} | {mamo['fraction_of_matmul']:.0%} |"
        )
    return "\n".join(lines)


def matmul_line(results: dict) -> str:
    settings, matmul = results["settings"], results["matmul"]
    return (
        f"size {settings['size']}, {settings['dtype']}, {settings['device']} ({settings['device_name']}), "
        f"{settings['threads']} threads, median of {settings['repeats']} × {settings['steps_per_repeat']} step(s); "
        f"{matmul['label']}: {matmul['seconds_per_step'] * 1e3:.2f} ms, {matmul['gflop_per_second']:.1f} GFLOP/s"
    )


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=SIZES, default="small")
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps-per-repeat", type=int, default=1)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--flava-codebook", action="store_true", help="build FLAVA's image codebook (random weights)")
    parser.add_argument("--memory", action="store_true", help="also measure each pre-training model's peak memory")
    parser.add_argument(
        "--models",
        nargs="+",
        choices=PRETRAINING,
        default=["mamo", "mamo-itc-itm-mlm", "mamo-checkpointed", "flava"],
        help="pre-training models to compare (fewer fit larger sizes in memory)",
    )
    parser.add_argument("--skip-encoders", action="store_true", help="do not compare the encoders with ViT/BERT")
    parser.add_argument("--only", choices=BUILDERS, help="internal: run one model and print its peak memory")
    parser.add_argument("--output", type=Path, help="JSON path (default: benchmarks/results/peer_step_<device>.json)")
    return parser.parse_args()


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    size = SIZES[args.size]
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    setup = Setup(size, args.device, dtype, make_batch(size), args.flava_codebook)
    if args.only:
        report_peak_memory(args.only, setup)
        return

    matmul = matmul_probe(setup)
    pretraining = [PRETRAINING[name](setup) for name in args.models]
    encoders = (
        {} if args.skip_encoders else {kind: [build(setup) for build in pair] for kind, pair in ENCODER_PAIRS.items()}
    )
    workloads = [matmul, *pretraining, *(workload for pair in encoders.values() for workload in pair)]
    flops, losses = {}, {}
    for workload in workloads:
        flops[workload.name], output = count_flops(workload)
        if workload.name in PRETRAINING:
            losses[workload.name] = computed_losses(output)
    seconds = time_interleaved(workloads, args.repeats, args.steps_per_repeat, args.device)

    matmul_record = record(matmul, seconds["matmul"], flops["matmul"], None)
    matmul_rate = matmul_record["gflop_per_second"] * 1e9

    def measured(workload):
        return record(workload, seconds[workload.name], flops[workload.name], matmul_rate)

    results = {
        "settings": {
            **{name: value for name, value in vars(args).items() if name not in ("only", "output")},
            "preset": asdict(size),
            "device_name": device_name(args.device),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
        "matmul": matmul_record,
        "pretraining_step": {
            workload.name: {**measured(workload), "losses": losses[workload.name]} for workload in pretraining
        },
        "encoders": {},
    }
    for kind, (mamo, reference) in encoders.items():
        entry = {"mamo": measured(mamo), "reference": measured(reference)}
        entry["mamo_over_reference"] = entry["mamo"]["seconds_per_step"] / entry["reference"]["seconds_per_step"]
        results["encoders"][kind] = entry
    if args.memory:
        for name, entry in results["pretraining_step"].items():
            memory = peak_memory_in_subprocess(name, args)
            entry["peak_memory_gib"], entry["memory_baseline_gib"] = memory["peak_memory_gib"], memory["baseline_gib"]

    print(matmul_line(results), "", pretraining_table(results), "", encoder_table(results), sep="\n")
    output = args.output or Path(__file__).parent / "results" / f"peer_step_{args.device.split(':')[0]}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {output}")


if __name__ == "__main__":
    main()
