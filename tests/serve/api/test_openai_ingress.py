"""The OpenAI API end to end over HTTP with the official client: the reference engine on the
tiny checkpoint behind `LocalEngineClient`, and a scripted engine for the reasoning split (the
tiny random model almost never writes `</think>`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx2
import pytest

from serve.api.api_settings import ApiSettings
from serve.api.engine_client import LocalEngineClient
from serve.api.ingress import build_openai_app
from serve.api.reasoning import ReasoningSplitter
from serve.engine.base import (
    EngineStats,
    GenerationRequest,
    SamplingParams,
    TokenDelta,
    TokenLogprob,
    Usage,
)
from serve.engine.reference.engine import EngineConfig, ReferenceEngine

SERVED = "deepseek-r1-tiny"
SETTINGS = ApiSettings(served_model_name=SERVED, context_length=1024, max_tokens_cap=512)
HI = [{"role": "user", "content": "What is 2+2?"}]


@pytest.fixture(scope="module")
def engine(tiny_fp32_dir):
    engine = ReferenceEngine.from_checkpoint(
        tiny_fp32_dir, EngineConfig(kv_pages=256, max_model_len=1024))
    yield engine
    asyncio.run(engine.shutdown())


@pytest.fixture
def server(engine, serve_app):
    return serve_app(build_openai_app(LocalEngineClient(engine), engine.tokenizer, SETTINGS))


def engine_run(engine: ReferenceEngine, prompt: list[int], sampling: SamplingParams) -> dict:
    """The engine's own output for a prompt, called directly (not over HTTP)."""
    async def run():
        ids, text, usage = [], [], None
        async for d in engine.generate(GenerationRequest("direct", tuple(prompt), sampling)):
            ids += d.token_ids
            text.append(d.text)
            usage = d.usage or usage
        return {"ids": ids, "text": "".join(text), "usage": usage}
    return asyncio.run(run())


def test_chat_matches_the_engine_and_reports_its_usage(server, engine):
    client = server.client()
    r = client.chat.completions.create(model=SERVED, messages=HI, max_tokens=12, temperature=0)
    prompt = engine.tokenizer.apply_chat_template(HI, add_generation_prompt=True)
    direct = engine_run(engine, prompt, SamplingParams(max_tokens=12, temperature=0.0))
    splitter = ReasoningSplitter(engine.tokenizer.think_end_id)
    reasoning = splitter.push(direct["text"], direct["ids"]).reasoning + splitter.flush().reasoning
    [choice] = r.choices
    assert r.id.startswith("chatcmpl-") and r.object == "chat.completion" and r.model == SERVED
    assert choice.message.role == "assistant"
    assert choice.message.reasoning_content == reasoning
    # The random model never closed its reasoning: no answer, said as null, not as "".
    assert choice.message.content is None and choice.finish_reason == "length"
    assert r.usage.prompt_tokens == len(prompt) == direct["usage"].prompt_tokens
    assert r.usage.completion_tokens == 12 == direct["usage"].completion_tokens
    assert r.usage.total_tokens == len(prompt) + 12
    assert r.usage.completion_tokens_details.reasoning_tokens == 12
    # A prompt seen before comes (in whole pages) from the prefix cache, and usage says so.
    long = [{"role": "user", "content": "Tell me about the rivers of Europe. " * 6}]
    first = client.chat.completions.create(model=SERVED, messages=long, max_tokens=2)
    again = client.chat.completions.create(model=SERVED, messages=long, max_tokens=2)
    assert first.usage.prompt_tokens == again.usage.prompt_tokens > 32
    assert again.usage.prompt_tokens_details.cached_tokens >= 32


def test_streaming_chat_matches_non_streaming(server):
    client = server.client()
    whole = client.chat.completions.create(model=SERVED, messages=HI, max_tokens=10,
                                           temperature=0)
    chunks = list(client.chat.completions.create(
        model=SERVED, messages=HI, max_tokens=10, temperature=0, stream=True,
        stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.id == chunks[0].id and c.object == "chat.completion.chunk" for c in chunks)
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    reasoning = "".join(getattr(d, "reasoning_content", None) or "" for d in deltas)
    assert reasoning == whole.choices[0].message.reasoning_content
    assert all(d.content is None for d in deltas)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "length" and not any(finishes[:-1])
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == [] and usage_chunk.usage.completion_tokens == 10
    assert usage_chunk.usage.prompt_tokens == whole.usage.prompt_tokens
    assert usage_chunk.usage.completion_tokens_details.reasoning_tokens == 10


def test_stop_strings_are_honoured(server):
    client = server.client()
    full = client.completions.create(model=SERVED, prompt="The capital of", max_tokens=16,
                                     temperature=0).choices[0].text
    stop = full[6:9]
    cut = full.find(stop)
    r = client.completions.create(model=SERVED, prompt="The capital of", max_tokens=16,
                                  temperature=0, stop=[stop, "never-seen"])
    assert r.choices[0].text == full[:cut] and r.choices[0].finish_reason == "stop"

    reasoning = client.chat.completions.create(model=SERVED, messages=HI, max_tokens=16,
                                               temperature=0).choices[0].message.reasoning_content
    stop = reasoning[5:8]
    r = client.chat.completions.create(model=SERVED, messages=HI, max_tokens=16, temperature=0,
                                       stop=stop)
    assert r.choices[0].message.reasoning_content == reasoning[:reasoning.find(stop)]
    assert r.choices[0].finish_reason == "stop"


def test_same_seed_same_text_and_n_choices(server):
    client = server.client()

    def texts(seed: int, n: int = 1) -> list[str]:
        r = client.chat.completions.create(model=SERVED, messages=HI, max_tokens=12,
                                           temperature=1.0, seed=seed, n=n)
        assert [c.index for c in r.choices] == list(range(n))
        assert r.usage.completion_tokens == 12 * n
        return [c.message.reasoning_content for c in r.choices]

    assert texts(7) == texts(7)
    assert texts(7) != texts(8)
    pair = texts(7, n=2)
    assert pair[0] == texts(7)[0]  # choice i uses seed + i
    assert pair[1] == texts(8)[0]
    assert pair == texts(7, n=2)


def test_streaming_n_choices_interleave(server):
    chunks = list(server.client().chat.completions.create(
        model=SERVED, messages=HI, max_tokens=6, temperature=1.0, seed=1, n=2, stream=True))
    for index in (0, 1):
        mine = [c.choices[0] for c in chunks if c.choices and c.choices[0].index == index]
        assert mine[0].delta.role == "assistant" and mine[-1].finish_reason == "length"


def test_logprobs_in_openai_shape(server):
    r = server.client().chat.completions.create(
        model=SERVED, messages=HI, max_tokens=5, temperature=0, logprobs=True, top_logprobs=3)
    entries = r.choices[0].logprobs.content
    assert len(entries) == 5
    for e in entries:
        assert e.logprob <= 0 and len(e.top_logprobs) == 3
        assert e.top_logprobs[0].logprob >= e.top_logprobs[-1].logprob
        assert e.token == e.top_logprobs[0].token  # greedy picks the most likely token
        assert bytes(e.bytes).decode(errors="replace") == e.token
    c = server.client().completions.create(model=SERVED, prompt="Hello", max_tokens=4,
                                           temperature=0, logprobs=2)
    lp = c.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 4
    assert lp.text_offset[0] == 0


def test_completions_token_prompts_batches_and_streaming(server, engine):
    client = server.client()
    ids = engine.tokenizer.encode("Once upon a time")
    by_ids = client.completions.create(model=SERVED, prompt=ids, max_tokens=8, temperature=0)
    by_text = client.completions.create(model=SERVED, prompt="Once upon a time", max_tokens=8,
                                        temperature=0)
    assert by_ids.choices[0].text == by_text.choices[0].text
    assert by_ids.usage.prompt_tokens == len(ids)
    batch = client.completions.create(model=SERVED, prompt=["Once upon a time", "Hello"],
                                      max_tokens=8, temperature=0)
    assert [c.index for c in batch.choices] == [0, 1]
    assert batch.choices[0].text == by_text.choices[0].text
    assert batch.usage.completion_tokens == 16
    streamed = list(client.completions.create(
        model=SERVED, prompt="Once upon a time", max_tokens=8, temperature=0, stream=True,
        stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in streamed if c.choices) == by_text.choices[0].text
    assert streamed[-1].usage.completion_tokens == 8


def test_models_health_and_metrics(server):
    client = server.client()
    assert [m.id for m in client.models.list().data] == [SERVED]
    assert client.models.retrieve(SERVED).id == SERVED
    client.chat.completions.create(model=SERVED, messages=HI, max_tokens=3, temperature=0)
    assert httpx2.get(f"{server.url}/health").status_code == 200
    text = httpx2.get(f"{server.url}/metrics").text
    for line in ('r1serve_api_requests_total{endpoint="chat",status="200"} 1.0',
                 'r1serve_api_requests_total{endpoint="models",status="200"} 2.0',
                 'r1serve_replica_kv_cache_usage_ratio{replica="local"}',
                 "r1serve_api_time_to_first_token_seconds_count",
                 "r1serve_api_inter_token_latency_seconds_count",
                 "r1serve_api_e2e_request_latency_seconds_count",
                 "r1serve_api_reasoning_tokens_total 3.0",
                 "r1serve_api_answer_tokens_total 0.0",
                 "r1serve_api_queue_depth 0.0",
                 "r1serve_api_requests_in_flight 0.0"):
        assert line in text, line


# -- the reasoning split over HTTP, with a scripted engine -----------------------------------


class ScriptedClient:
    """An engine that plays back fixed deltas: reasoning, `</think>`, then the answer."""

    def __init__(self, pieces: list[tuple[str, tuple[int, ...]]], finish: str = "stop") -> None:
        self.pieces, self.finish = pieces, finish

    async def generate(self, request: GenerationRequest) -> AsyncIterator[TokenDelta]:
        total = sum(len(ids) for _, ids in self.pieces)
        for i, (text, ids) in enumerate(self.pieces):
            await asyncio.sleep(0)
            last = i == len(self.pieces) - 1
            lps = tuple(TokenLogprob(t, -0.1, ((t, -0.1),)) for t in ids)
            yield TokenDelta(
                request.request_id, ids, text, lps if request.sampling.logprobs else None,
                finish_reason=self.finish if last else None,
                usage=Usage(len(request.prompt_token_ids), total, 0) if last else None)

    async def abort(self, request_id: str) -> None:
        pass

    async def health(self) -> None:
        pass

    async def replica_stats(self) -> dict[str, EngineStats]:
        return {}


def scripted(tokenizer) -> list[tuple[str, tuple[int, ...]]]:
    end = tokenizer.think_end_id
    return [("Two plus", (100, 101)), (" two.</th", (102,)), ("ink>", (end,)),
            ("\n\n", (103,)), ("It is", (104, 105)), (" 4.", (106,))]


def test_reasoning_and_answer_are_separate(serve_app, tiny_tokenizer):
    server = serve_app(build_openai_app(ScriptedClient(scripted(tiny_tokenizer)),
                                        tiny_tokenizer, SETTINGS))
    client = server.client()
    r = client.chat.completions.create(model=SERVED, messages=HI)
    message = r.choices[0].message
    assert message.reasoning_content == "Two plus two."
    assert message.content == "It is 4."
    assert r.choices[0].finish_reason == "stop"
    # `</think>` is the 4th token: it and the 3 before it are reasoning, 4 answer tokens follow.
    assert r.usage.completion_tokens == 8
    assert r.usage.completion_tokens_details.reasoning_tokens == 4

    chunks = list(client.chat.completions.create(
        model=SERVED, messages=HI, stream=True, stream_options={"include_usage": True}))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    reasoning = [d.reasoning_content for d in deltas if getattr(d, "reasoning_content", None)]
    content = [d.content for d in deltas if d.content]
    assert "".join(reasoning) == "Two plus two." and "".join(content) == "It is 4."
    assert not any(getattr(d, "reasoning_content", None) and d.content for d in deltas)
    assert chunks[-1].usage.completion_tokens_details.reasoning_tokens == 4

    text = "".join(c.choices[0].text for c in client.completions.create(
        model=SERVED, prompt="x", stream=True))
    assert text == "Two plus two.</think>\n\nIt is 4."  # raw completions are not split


def test_output_without_close_tag_has_no_answer(serve_app, tiny_tokenizer):
    pieces = [("Still", (100,)), (" thinking </thi", (101, 102))]
    server = serve_app(build_openai_app(ScriptedClient(pieces, finish="length"),
                                        tiny_tokenizer, SETTINGS))
    r = server.client().chat.completions.create(model=SERVED, messages=HI)
    assert r.choices[0].message.reasoning_content == "Still thinking </thi"
    assert r.choices[0].message.content is None
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens_details.reasoning_tokens == 3
