"""On a CUDA GPU (skipped without one; `pytest -m cuda`, run by `benchmarks/gpu_check.sh`): the GPU computes what
the CPU computes, bf16 training stays finite, SDPA's fused kernels match the math kernel (with attention dropout in
training too), and a short `pretrain` runs on the GPU and says so."""

import pytest
import torch
from helpers import TINY_RUN, random_pairs
from torch.nn.attention import SDPBackend, sdpa_kernel

from mamo_hf import MamoConfig, MamoForPreTraining, MamoModel
from mamo_hf.training import PretrainingArguments, pretrain

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_the_gpu_computes_what_the_cpu_computes():
    """The encoders, the fusion and the ITC loss in fp32 (the pre-training losses also draw masks and negatives,
    from a generator whose streams differ between devices)."""
    torch.manual_seed(0)
    model = MamoModel(MamoConfig.tiny()).eval()
    batch = random_pairs(model.config, batch_size=4)
    with torch.no_grad():
        on_cpu = model(**batch, return_loss=True)
        on_gpu = model.cuda()(**{name: value.cuda() for name, value in batch.items()}, return_loss=True)
    for name in ("loss", "logits_per_image", "last_hidden_state"):
        torch.testing.assert_close(getattr(on_gpu, name).cpu(), getattr(on_cpu, name), atol=1e-4, rtol=1e-3)


def test_bf16_training_steps_stay_finite_and_lower_the_loss():
    torch.manual_seed(0)
    model = MamoForPreTraining(MamoConfig.tiny()).cuda().train()
    batch = {name: value.cuda() for name, value in random_pairs(model.config, batch_size=8).items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    totals = []
    for step in range(8):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            outputs = model(**batch, generator=torch.Generator("cuda").manual_seed(step))
        outputs.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        model.update_teacher()
        totals.append(float(outputs.loss))
    assert all(torch.isfinite(torch.tensor(totals))) and totals[-1] < totals[0]


@pytest.mark.parametrize("kernel", [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION])
def test_fused_attention_kernels_match_the_math_kernel_in_bf16(kernel):
    torch.manual_seed(0)
    model = MamoForPreTraining(MamoConfig.tiny()).cuda().eval()
    batch = {name: value.cuda() for name, value in random_pairs(model.config, batch_size=4).items()}
    results = {}
    for backend in (SDPBackend.MATH, kernel):
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16), sdpa_kernel(backend):
            outputs = model.mamo(input_ids=batch["input_ids"], pixel_values=batch["pixel_values"])
        results[backend] = outputs.last_hidden_state.float()
    torch.testing.assert_close(results[kernel], results[SDPBackend.MATH], atol=3e-2, rtol=3e-2)


def test_the_flash_kernel_trains_with_attention_dropout():
    """Attention dropout in training: the flash kernel (only it) must run the step, forward and backward."""
    torch.manual_seed(0)
    config = MamoConfig.tiny()
    for sub_config in (config.vision_config, config.text_config, config.fusion_encoder_config):
        sub_config.attention_probs_dropout_prob = 0.1
    model = MamoForPreTraining(config).cuda().train()
    batch = {name: value.cuda() for name, value in random_pairs(config, batch_size=4).items()}
    with torch.autocast("cuda", dtype=torch.bfloat16), sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        outputs = model(**batch, generator=torch.Generator("cuda").manual_seed(0))
        outputs.loss.backward()
    gradients = [parameter.grad for parameter in model.parameters() if parameter.grad is not None]
    assert gradients and all(torch.isfinite(gradient).all() for gradient in gradients)


def test_a_short_pretraining_run_uses_the_gpu_and_says_so(tmp_path, capsys):
    arguments = {**TINY_RUN, "output_dir": str(tmp_path / "run"), "max_steps": 3, "cpu": False}
    result = pretrain(PretrainingArguments(**arguments))
    assert next(result.model.parameters()).device.type == "cuda"
    assert "Training on cuda" in capsys.readouterr().out
