"""Record SGLang 0.5.23's streamed chunks for the stream-adapter and engine tests.

    python scripts/record_sglang_streams.py [--check] [tests/serve/engine/sglang/data/*.json]

Each recording's `sglang` section says what the scheduler does (the prompt and output text,
how many tokens each step sends, how it finishes or is aborted); this script turns that into
the chunks `RayEngine.async_generate(stream=True)` yields, through SGLang's own code:
- the scheduler's side: `Req.init_incremental_detokenize` (the ids and offsets its output
  streamer sends per step) and SGLang's finish-reason classes;
- `DetokenizerManager.handle_batch_token_id_out`, which turns ids into text deltas (holding
  back incomplete characters and words, trimming a matched stop string);
- `TokenizerManager._handle_batch_output`, `_handle_abort_req` and `_stream_one_response`,
  which build the cumulative chunks and their meta_info.
Only the sockets between them are left out, and metrics (SGLang's timing fields in meta_info)
are off. Texts are tokenized with the tiny checkpoint's byte-level BPE, whose ids stand in for
R1's. It writes `chunks` (and the prompt's length, `request.prompt_tokens`) back into each file;
`--check` only reports files that differ (time stamps aside). The `expected` deltas beside them
are what the stream adapter must make of the chunks: r1serve's expectations, not recordings.

It needs SGLang with its full Python dependencies (torchvision among them), which r1serve's
test environment does not install: run it where SGLang runs (the serving image) or in a
virtual environment with them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sys
import tempfile
from array import array
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT / "tests" / "serve" / "engine" / "sglang" / "data"
R1_CONFIG = ROOT / ".." / "shared" / "data" / "deepseek-r1" / "config.json"
# meta_info fields that hold times: they differ on every run
VOLATILE = ("e2e_latency", "response_sent_to_client_ts")
RID = "req-1"


class Sglang:
    """SGLang's detokenizer and tokenizer manager, published as one instance's are."""

    def __init__(self, model_dir: Path) -> None:
        import sglang.srt.managers.detokenizer_manager as dm
        import sglang.srt.managers.tokenizer_manager as tmm
        from sglang.srt.runtime_context import get_lora, get_observability, get_serving, publish
        from sglang.srt.server_args import ServerArgs

        from serve.config import R1ServeConfig
        from serve.engine.sglang.profiles import get_profile
        from serve.engine.sglang.server_args import build_server_args

        config = R1ServeConfig.from_dict({"model": {"path": str(model_dir),
                                                    "backend": "sglang"}})
        kwargs = build_server_args(config, get_profile("h200x8")).engine_kwargs()
        # device="cpu": resolving looks for an accelerator; nothing here runs on one.
        self.server_args = ServerArgs(**kwargs, device="cpu")
        publish(self.server_args, role="tokenizer")

        self.detokenizer = object.__new__(dm.DetokenizerManager)
        self.detokenizer.init_tokenizer(self.server_args)
        self.detokenizer.init_running_status(self.server_args)
        self.tokenizer = self.detokenizer.tokenizer

        tm = object.__new__(tmm.TokenizerManager)  # as its __init__ sets these, less sockets
        tm.server_args = self.server_args
        tm.enable_metrics = False  # its collectors are Prometheus objects of their own
        tm.incremental_streaming_output = get_serving().incremental_streaming_output
        tm.enable_lora = get_lora().enable_lora
        tm.skip_tokenizer_init = get_serving().skip_tokenizer_init
        tm.crash_dump_folder = get_observability().crash_dump_folder
        tm.init_running_status()
        tm.init_request_logging_and_dumping()
        self.tm, self.tmm = tm, tmm

    async def record(self, spec: dict[str, Any]) -> tuple[list[dict], int]:
        """The chunks of the request `spec` describes, and its prompt's length in tokens."""
        from sglang.srt.managers import schedule_batch as sb
        from sglang.srt.managers.io_struct import AbortReq, BatchTokenIDOutput, GenerateReqInput
        from sglang.srt.observability.req_time_stats import APIServerReqTimeStats
        from sglang.srt.sampling.sampling_params import SamplingParams
        from sglang.srt.utils.weight_versions import compute_weight_version_spans

        tok = self.tokenizer
        prompt = tok.encode(spec["prompt"], add_special_tokens=False)
        output = tok.encode(spec.get("output", ""), add_special_tokens=False)
        if spec.get("eos"):
            output.append(tok.eos_token_id)
        logprobs = spec.get("logprobs")
        top = logprobs["top"] if logprobs else 0
        obj = GenerateReqInput(input_ids=prompt, rid=RID, stream=True, sampling_params={},
                               return_logprob=bool(logprobs), top_logprobs_num=top)
        obj.normalize_batch_and_arguments()
        state = self.tmm.ReqState([], False, asyncio.Event(), obj,
                                  time_stats=APIServerReqTimeStats())
        self.tm.rid_to_state[RID] = state
        chunks: list[dict] = []

        async def consume() -> None:
            async for out in self.tm._wait_one_response(obj):
                chunks.append(json.loads(json.dumps(out, default=list)))

        reader = asyncio.get_running_loop().create_task(consume())
        await asyncio.sleep(0)  # the caller is waiting on the request before SGLang answers
        req = sb.Req(RID, "", array("q", prompt), SamplingParams(stop=spec.get("stop")))
        rng = random.Random(spec.get("seed", 0))
        sent_ids, sent_decode = 0, 0
        steps = spec.get("steps", [len(output)])
        for n, count in enumerate(steps):
            last = n == len(steps) - 1
            new = output[sent_ids:] if last and not spec.get("abort") else \
                output[sent_ids:sent_ids + count]
            req.output_ids.extend(new)
            finish = _finish(sb, spec["finish"]) if last and "finish" in spec else None
            # What the scheduler's output streamer sends for this step.
            decode_ids, read_offset = req.init_incremental_detokenize()
            values = [rng.uniform(-3.0, 0.0) for _ in new]
            batch = BatchTokenIDOutput(
                rids=[RID], finished_reasons=[finish], decoded_texts=[req.decoded_text],
                decode_ids=[array("q", decode_ids[sent_decode:])], read_offsets=[read_offset],
                output_ids=[array("q", new)], skip_special_tokens=[True],
                spaces_between_special_tokens=[True], no_stop_trim=[False],
                prompt_tokens=[len(prompt)], completion_tokens=[len(req.output_ids)],
                reasoning_tokens=[0], cached_tokens=[spec.get("cached_tokens", 0)],
                input_token_logprobs_val=None, input_token_logprobs_idx=None,
                output_token_logprobs_val=[values] if logprobs else None,
                output_token_logprobs_idx=[list(new)] if logprobs else None,
                input_top_logprobs_val=None, input_top_logprobs_idx=None,
                output_top_logprobs_val=[[[v] + sorted(
                    (rng.uniform(-6.0, v) for _ in range(top - 1)), reverse=True)
                    for v in values]] if logprobs else None,
                output_top_logprobs_idx=[[[t] + [rng.randrange(tok.vocab_size)
                                                 for _ in range(top - 1)] for t in new]]
                if logprobs else None,
                input_token_ids_logprobs_val=None, input_token_ids_logprobs_idx=None,
                output_token_ids_logprobs_val=None, output_token_ids_logprobs_idx=None,
                output_token_entropy_val=None, output_token_sampling_mask=None,
                output_hidden_states=None, routed_experts=None, indexer_topk=None,
                placeholder_tokens_idx=None, placeholder_tokens_val=None,
                retraction_counts=[0])
            sent_ids, sent_decode = len(req.output_ids), len(decode_ids)
            await self.tm._handle_batch_output(self.detokenizer.handle_batch_token_id_out(batch))
            await asyncio.sleep(0)
        if spec.get("abort") == "waiting_queue":
            # The scheduler pops it from its waiting queue and reports it outside the stream.
            self.tm._handle_abort_req(AbortReq(
                rid=RID, weight_versions=compute_weight_version_spans(
                    [], current_version="default", num_output_tokens=len(req.output_ids))))
        await reader
        return chunks, len(prompt)


def _finish(sb: Any, spec: dict[str, Any]) -> dict:
    """One of SGLang's finish reasons, as its scheduler reports it."""
    kwargs = {k: v for k, v in spec.items() if k != "class"}
    return getattr(sb, spec["class"])(**kwargs).to_json()


def _stable(chunks: list[dict]) -> list[dict]:
    return [{**c, "meta_info": {k: v for k, v in c["meta_info"].items() if k not in VOLATILE}}
            for c in chunks]


def _model_dir() -> Path:
    """R1's config.json (server args resolve against it) beside the tiny tokenizer."""
    from serve.engine.reference.tiny_checkpoint import tokenizer_config, train_tiny_tokenizer

    out = Path(tempfile.mkdtemp(prefix="r1serve-record-"))
    shutil.copy(R1_CONFIG, out / "config.json")
    (out / "tokenizer.json").write_text(train_tiny_tokenizer().to_str(), encoding="utf-8")
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config()),
                                               encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", type=Path)
    parser.add_argument("--check", action="store_true", help="report differences only")
    ns = parser.parse_args(argv)
    paths = ns.paths or sorted(DATA.glob("*.json"))
    sglang = Sglang(_model_dir())
    differ = []
    for path in paths:
        recording = json.loads(path.read_text())
        if "sglang" not in recording:
            continue
        chunks, prompt_tokens = asyncio.run(sglang.record(recording["sglang"]))
        if _stable(chunks) != _stable(recording.get("chunks", [])) \
                or recording["request"].get("prompt_tokens") != prompt_tokens:
            differ.append(path.name)
            if not ns.check:
                recording["request"]["prompt_tokens"] = prompt_tokens  # what r1serve sent
                recording["chunks"] = chunks
                path.write_text(json.dumps(recording, indent=2, ensure_ascii=False) + "\n")
    print(("differ: " if ns.check else "rewrote: ") + (", ".join(differ) or "none"))
    return 1 if ns.check and differ else 0


if __name__ == "__main__":
    sys.exit(main())
