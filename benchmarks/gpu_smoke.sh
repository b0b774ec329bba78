#!/usr/bin/env bash
# GPU smoke test of an r1serve + SGLang deployment on ONE GPU node.
#
#   bash benchmarks/gpu_smoke.sh            # defaults below
#   MODEL=deepseek-ai/DeepSeek-V2-Lite-Chat GPUS=2 REQUESTS=16 bash benchmarks/gpu_smoke.sh
#   ONLY=numerics bash benchmarks/gpu_smoke.sh   # torch alone: no Ray, SGLang or download
#
# First, with torch alone, `benchmarks/gpu_numerics.py` checks the reference model's fp32 and
# bf16 numerics and R1's FP8 block dequantization on the GPU against the CPU, and prints one
# JSON line; the script stops there with ONLY=numerics, or when that check fails.
#
# Then it downloads a small public model of R1's architecture family, deploys it with
# `r1serve deploy` (backend sglang) on a local Ray, sends a few streamed requests, and prints
# time to first token and throughput. Run it inside the r1serve image (docker/Dockerfile) or a
# venv with `pip install -e '.[sglang]'`.
#
# Model: DeepSeek-V2-Lite-Chat (15.7B parameters, 2.4B active; ~32 GB in bf16). It is the
# smallest public checkpoint with the same building blocks as R1: multi-head latent attention
# (MLA, kv_lora_rank 512 with decoupled RoPE), a DeepSeekMoE layer of routed + shared experts,
# the first layer dense, YaRN rope scaling. It fits one 80 GB GPU, so the smoke test runs the
# same SGLang code paths (MLA kernels, fused MoE) as R1 does without a multi-GPU node. R1 adds
# FP8 block-quantized weights and sigmoid top-k routing, which only R1-size runs exercise.
#
# Environment:
#   MODEL      Hugging Face repo id (default deepseek-ai/DeepSeek-V2-Lite-Chat)
#   MODEL_DIR  where to download it (default ~/.cache/r1serve/models/<name>)
#   GPUS       GPUs of the one instance = tensor parallel size (default 1)
#   REQUESTS   requests sent, CONCURRENCY at a time (defaults 8 and 4)
#   MAX_TOKENS output tokens per request (default 256)
#   PORT       HTTP port of the OpenAI API (default 8000)
#   KEEP=1     leave the application running afterwards
#   ONLY=numerics  stop after the torch-only check
set -euo pipefail

MODEL="${MODEL:-deepseek-ai/DeepSeek-V2-Lite-Chat}"
MODEL_DIR="${MODEL_DIR:-$HOME/.cache/r1serve/models/${MODEL##*/}}"
GPUS="${GPUS:-1}"
REQUESTS="${REQUESTS:-8}"
CONCURRENCY="${CONCURRENCY:-4}"
MAX_TOKENS="${MAX_TOKENS:-256}"
PORT="${PORT:-8000}"
KEEP="${KEEP:-0}"
ONLY="${ONLY:-}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
WORK="$(mktemp -d)"
STARTED_RAY=0

log() { printf '[gpu_smoke] %s\n' "$*" >&2; }

cleanup() {
  if [ "$KEEP" != "1" ]; then
    serve shutdown -y >/dev/null 2>&1 || true
    if [ "$STARTED_RAY" = "1" ]; then ray stop >/dev/null 2>&1 || true; fi
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

command -v nvidia-smi >/dev/null || { log "nvidia-smi not found: run this on a GPU node"; exit 1; }
have=$(nvidia-smi -L | wc -l)
if [ "$have" -lt "$GPUS" ]; then
  log "GPUS=$GPUS but this node has $have GPU(s)"
  exit 1
fi
log "torch numerics: the reference model and FP8 dequantization on the GPU against the CPU"
(cd "$REPO" && "$PY" -m benchmarks.gpu_numerics --device cuda) \
  || { log "numerics check failed: the JSON line above says which part"; exit 1; }
if [ "$ONLY" = "numerics" ]; then
  log "ONLY=numerics: done"
  exit 0
fi

command -v r1serve >/dev/null || { log "r1serve is not installed (pip install -e '.[sglang]')"; exit 1; }
"$PY" -c "import sglang; assert sglang.__version__ == '0.5.23', sglang.__version__" \
  || { log "sglang 0.5.23 is required (pip install -e '.[sglang]')"; exit 1; }

if [ ! -f "$MODEL_DIR/config.json" ]; then
  log "downloading $MODEL to $MODEL_DIR"
  "$PY" -c "import sys; from huggingface_hub import snapshot_download; \
snapshot_download(sys.argv[1], local_dir=sys.argv[2])" "$MODEL" "$MODEL_DIR"
fi

if ! ray status >/dev/null 2>&1; then
  log "starting a local Ray head with $GPUS GPU(s)"
  ray start --head --num-gpus "$GPUS" --disable-usage-stats >/dev/null
  STARTED_RAY=1
fi

cat > "$WORK/smoke.yaml" <<YAML
model:
  path: $MODEL_DIR
  served_name: smoke
  backend: sglang
  context_length: 8192
engine:
  nodes_per_replica: 1
  devices_per_node: $GPUS
  ep_size: 1
  backend_args:
    mem_fraction_static: 0.8
api:
  host: 127.0.0.1
  port: $PORT
  max_tokens_cap: 4096
autoscaling:
  min_replicas: 1
  max_replicas: 1
YAML

log "printing the SGLang arguments r1serve generates"
r1serve sglang-args --profile h200x8 --config "$WORK/smoke.yaml" >/dev/null 2>&1 \
  && log "sglang-args OK" || log "sglang-args unavailable (older r1serve CLI); continuing"

log "deploying (weights load and CUDA graphs capture: a few minutes)"
t0=$(date +%s)
r1serve deploy "$WORK/smoke.yaml"
log "deployed in $(( $(date +%s) - t0 )) s"

log "GET /v1/models"
curl -fsS "http://127.0.0.1:$PORT/v1/models"
echo

log "sending $REQUESTS streamed chat requests, $CONCURRENCY at a time, $MAX_TOKENS tokens each"
"$PY" - "$PORT" "$REQUESTS" "$CONCURRENCY" "$MAX_TOKENS" <<'PYEOF'
"""Streamed chat completions: TTFT per request, decode speed, aggregate throughput."""
import json
import statistics
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

port, n, conc, max_tokens = (int(a) for a in sys.argv[1:])
URL = f"http://127.0.0.1:{port}/v1/chat/completions"
PROMPTS = ["Explain why the sky is blue in three sentences.",
           "Write a haiku about GPUs.",
           "What is 17 * 23? Think step by step.",
           "List three uses of a mixture-of-experts model."]


def one(i: int) -> dict:
    body = {"model": "smoke", "stream": True, "max_tokens": max_tokens, "temperature": 0.6,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}]}
    req = urllib.request.Request(URL, json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    start = time.perf_counter()
    first = None
    tokens = 0
    text = []
    with urllib.request.urlopen(req, timeout=600) as resp:
        for raw in resp:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if event.get("usage"):
                tokens = event["usage"]["completion_tokens"]
            for choice in event.get("choices", []):
                delta = choice.get("delta", {})
                piece = (delta.get("content") or "") + (delta.get("reasoning_content") or "")
                if piece and first is None:
                    first = time.perf_counter()
                text.append(piece)
    end = time.perf_counter()
    if first is None or tokens == 0:
        raise SystemExit(f"request {i}: no tokens streamed")
    return {"ttft": first - start, "total": end - start, "tokens": tokens,
            "decode_tps": (tokens - 1) / max(end - first, 1e-9), "text": "".join(text)}


t0 = time.perf_counter()
with ThreadPoolExecutor(conc) as pool:
    results = list(pool.map(one, range(n)))
wall = time.perf_counter() - t0
ttft = sorted(r["ttft"] for r in results)
total_tokens = sum(r["tokens"] for r in results)
print(f"sample output: {results[0]['text'][:200]!r}")
print(f"requests        {n} ({conc} concurrent), all finished")
print(f"TTFT            p50 {statistics.median(ttft) * 1000:.0f} ms, "
      f"max {ttft[-1] * 1000:.0f} ms")
print(f"decode speed    {statistics.mean(r['decode_tps'] for r in results):.1f} tok/s "
      "per request (mean)")
print(f"throughput      {total_tokens / wall:.1f} output tok/s over {wall:.1f} s "
      f"({total_tokens} tokens)")
PYEOF

log "engine stats"
r1serve status || true
log "smoke test passed"
