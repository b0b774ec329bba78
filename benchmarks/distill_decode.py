"""Prefill and decode tokens/s of a distilled R1 model's real shape on this CPU, with random
weights (the arithmetic and the bytes read per step are the real model's), through the
reference engine's model runner and paged K/V cache.

    python -m benchmarks.distill_decode [--config config.json] [--batches 1,8]
        [--prompt-len 64] [--steps 16]

Default shape: DeepSeek-R1-Distill-Qwen-1.5B (float32, 7.1 GB of weights in memory).
"""

from __future__ import annotations

import argparse
import json
import time
from importlib import resources

import torch

from serve.engine.reference.dense_args import DenseArgs
from serve.engine.reference.dense_model import DenseTransformer
from serve.engine.reference.model_runner import ModelRunner, StepItem

PAGE = 16
WARMUP = 2  # decode steps run before the timed ones


def random_model(args: DenseArgs) -> DenseTransformer:
    """The model with N(0, 0.02) weights and unit norms, allocated once (no default init)."""
    with torch.device("meta"):
        model = DenseTransformer(args)
    model = model.to_empty(device="cpu")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            else:
                p.normal_(0.0, 0.02, generator=g)
    return model.eval()


def measure(model: DenseTransformer, batch: int, prompt_len: int, steps: int) -> dict:
    pages_per_seq = -(-(prompt_len + WARMUP + steps) // PAGE)
    runner = ModelRunner(model, num_pages=batch * pages_per_seq, page_size=PAGE)
    tables = [list(range(i * pages_per_seq, (i + 1) * pages_per_seq)) for i in range(batch)]
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(2, model.args.vocab_size, (prompt_len,), generator=g).tolist()
               for _ in range(batch)]
    t0 = time.perf_counter()
    logits = runner.run([StepItem(p, 0, t) for p, t in zip(prompts, tables, strict=True)])
    prefill_s = time.perf_counter() - t0
    next_ids = logits.argmax(-1).tolist()
    for step in range(WARMUP + steps):
        if step == WARMUP:  # the first steps after a prefill are not the steady state
            t0 = time.perf_counter()
        pos = prompt_len + step
        logits = runner.run([StepItem([next_ids[i]], pos, tables[i]) for i in range(batch)])
        next_ids = logits.argmax(-1).tolist()
    decode_s = time.perf_counter() - t0
    return {"batch": batch, "prefill_tokens_per_s": round(batch * prompt_len / prefill_s, 1),
            "decode_tokens_per_s": round(batch * steps / decode_s, 2),
            "decode_steps_per_s": round(steps / decode_s, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", help="a Qwen2/Llama config.json (default: the 1.5B distill's)")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--steps", type=int, default=16)
    ns = ap.parse_args()
    source = (resources.files("serve.engine.reference") / "data" /
              "distill_qwen_1.5b_config.json") if ns.config is None else ns.config
    with open(source, encoding="utf-8") as f:
        args = DenseArgs.from_dict(json.load(f), str(source))
    model = random_model(args)
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    results = [measure(model, int(b), ns.prompt_len, ns.steps) for b in ns.batches.split(",")]
    print(json.dumps({"model": str(source).rsplit("/", 1)[-1], "weight_bytes": weight_bytes,
                      "prompt_len": ns.prompt_len, "steps": ns.steps,
                      "torch_threads": torch.get_num_threads(), "results": results}))


if __name__ == "__main__":
    main()
