"""`python -m benchmarks.gpu_numerics`: the reference model's numerics on a GPU against the CPU,
with torch alone (no Ray, SGLang, transformers, safetensors or tokenizers), as one JSON line.

The tiny R1-architecture checkpoint's weights (`tiny_checkpoint.tiny_tensors`, made in memory:
nothing is carried to the GPU machine but this repository) run one prefill and a few decode
steps through the paged latent cache, on the device and on the CPU:
- fp32: device against CPU, logits within FP32_TOL (TF32 off: it would round fp32 matmuls);
- bf16: bf16 weights and cache on the device against fp32 on the CPU: a relative error (L2 over
  all logits) no more than BF16_VS_CPU times bf16's own on the CPU (about 0.1 for this model:
  bf16 keeps 8 bits of mantissa through 4 layers), and the same greedy next token at almost
  every step;
- fp8: R1's FP8 storage (float8_e4m3fn weights, 128x128 block scales) dequantized on the device
  equals the CPU's bit for bit, and the model built from those weights agrees with the CPU's
  within FP32_TOL.

    python -m benchmarks.gpu_numerics                 # cuda when there is one, else cpu
    python -m benchmarks.gpu_numerics --device cpu    # CPU against CPU: how CI runs it

Exit status 0 when every check passes. `benchmarks/gpu_smoke.sh` runs it first.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import torch

from serve.engine.reference.checkpoint import dequantize_fp8
from serve.engine.reference.forward_batch import ForwardBatch
from serve.engine.reference.model import Transformer
from serve.engine.reference.model_args import ModelArgs
from serve.engine.reference.model_runner import ModelRunner, StepItem
from serve.engine.reference.tiny_checkpoint import TOKENIZER_VOCAB_SIZE, tiny_config, tiny_tensors
from serve.engine.reference.weight_layout import is_mtp_tensor, scale_name

FP32_TOL = 1e-3  # max |logit difference|, device fp32 against CPU fp32
BF16_VS_CPU = 1.5  # |bf16 - fp32| / |fp32| over all logits, against the same on the CPU
BF16_AGREE = 0.9  # share of steps whose greedy next token is the same in bf16
PROMPT, DECODE, PAGE, SEED = 48, 8, 16, 0
_FP32_SUFFIXES = ("mlp.gate.weight", "mlp.gate.e_score_correction_bias")  # routing in fp32


def state_dict(args: ModelArgs, stored: dict[str, torch.Tensor], dtype: torch.dtype,
               device: str) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors as the model takes them, FP8 ones dequantized on `device`."""
    out = {}
    for name, t in stored.items():
        if is_mtp_tensor(args, name) or name.endswith("weight_scale_inv"):
            continue
        if t.dtype == torch.float8_e4m3fn:
            t = dequantize_fp8(t.to(device), stored[scale_name(name)].to(device))
        out[name] = t.to(device, torch.float32 if name.endswith(_FP32_SUFFIXES) else dtype)
    return out


def model_on(args: ModelArgs, weights: dict[str, torch.Tensor], device: str) -> Transformer:
    with torch.device("meta"):
        model = Transformer(args)
    model.load_state_dict(weights, strict=True, assign=True)
    # The rotary frequencies are a plain attribute, not a buffer: `Module.to` would leave them.
    model.rope.inv_freq = model.rope.inv_freq.to(device)
    return model.eval()


def _on(batch: ForwardBatch, device: str) -> ForwardBatch:
    groups = tuple(dataclasses.replace(g, query_index=g.query_index.to(device),
                                       kv_slots=g.kv_slots.to(device), mask=g.mask.to(device))
                   for g in batch.groups)
    return dataclasses.replace(
        batch, input_ids=batch.input_ids.to(device), positions=batch.positions.to(device),
        slot_mapping=batch.slot_mapping.to(device), groups=groups,
        logits_index=batch.logits_index.to(device))


def logits(model: Transformer, prompt: Sequence[int], continuation: Sequence[int] | None,
           device: str, cache_dtype: torch.dtype) -> tuple[torch.Tensor, list[int]]:
    """Next-token logits after the prompt and after each token decoded next, [1 + DECODE, V],
    and those tokens: `continuation`'s, or the model's greedy choices when it is None."""
    runner = ModelRunner(model, num_pages=8, page_size=PAGE, cache_dtype=cache_dtype)
    kv = runner.kv_cache.to(device)
    pages = [5, 0, 7, 2, 6, 1, 4, 3]  # scattered: the page table decides, not contiguity
    out = [model(_on(runner.build_batch([StepItem(list(prompt), 0, pages)]), device), kv)]
    tokens: list[int] = []
    for i in range(DECODE):
        tokens.append(int(out[-1][0].argmax()) if continuation is None else continuation[i])
        step = StepItem([tokens[-1]], len(prompt) + i, pages)
        out.append(model(_on(runner.build_batch([step]), device), kv))
    return torch.cat(out).float().cpu(), tokens


def run(device: str) -> dict[str, Any]:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    args = ModelArgs.from_dict(tiny_config(TOKENIZER_VOCAB_SIZE, "fp32"), source="tiny")
    g = torch.Generator().manual_seed(SEED)
    prompt = torch.randint(2, args.vocab_size, (PROMPT,), generator=g).tolist()
    fp32 = tiny_tensors(args, SEED, "fp32")
    cpu = model_on(args, state_dict(args, fp32, torch.float32, "cpu"), "cpu")
    # The CPU's greedy continuation, fed to every other run alike.
    ref, greedy = logits(cpu, prompt, None, "cpu", torch.float32)
    report: dict[str, Any] = {}

    dev = model_on(args, state_dict(args, fp32, torch.float32, device), device)
    diff = (logits(dev, prompt, greedy, device, torch.float32)[0] - ref).abs().max().item()
    report["fp32"] = {"max_abs_diff": diff, "tol": FP32_TOL, "ok": diff <= FP32_TOL}

    def bf16_error(where: str) -> tuple[float, float]:
        model = model_on(args, state_dict(args, fp32, torch.bfloat16, where), where)
        half = logits(model, prompt, greedy, where, torch.bfloat16)[0]
        agree = (half.argmax(-1) == ref.argmax(-1)).float().mean().item()
        return ((half - ref).norm() / ref.norm()).item(), agree

    rel, agree = bf16_error(device)
    on_cpu = rel if device == "cpu" else bf16_error("cpu")[0]
    report["bf16"] = {"rel_error": rel, "rel_error_on_cpu": on_cpu, "greedy_agreement": agree,
                      "ok": rel <= BF16_VS_CPU * on_cpu + 1e-3 and agree >= BF16_AGREE}

    fp8 = tiny_tensors(args, SEED, "fp8")
    quantized = [n for n, t in fp8.items() if t.dtype == torch.float8_e4m3fn]
    worst = max((dequantize_fp8(fp8[n].to(device), fp8[scale_name(n)].to(device)).cpu()
                 - dequantize_fp8(fp8[n], fp8[scale_name(n)])).abs().max().item()
                for n in quantized)
    cpu8 = model_on(args, state_dict(args, fp8, torch.float32, "cpu"), "cpu")
    dev8 = model_on(args, state_dict(args, fp8, torch.float32, device), device)
    diff8 = (logits(dev8, prompt, greedy, device, torch.float32)[0]
             - logits(cpu8, prompt, greedy, "cpu", torch.float32)[0]).abs().max().item()
    report["fp8"] = {"tensors": len(quantized), "dequant_max_abs_diff": worst,
                     "model_max_abs_diff": diff8, "tol": FP32_TOL,
                     "ok": worst == 0.0 and diff8 <= FP32_TOL}
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ns = parser.parse_args(argv)
    started = time.perf_counter()
    result: dict[str, Any] = {
        "check": "gpu_numerics", "device": ns.device, "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(ns.device) if ns.device.startswith("cuda") else None}
    try:
        result.update(run(ns.device))
        result["ok"] = all(result[k]["ok"] for k in ("fp32", "bf16", "fp8"))
    except Exception as e:  # one line, whatever happens: the caller reads it
        result.update(ok=False, error=f"{type(e).__name__}: {e}")
    result["seconds"] = round(time.perf_counter() - started, 2)
    print(json.dumps(result), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
