"""R1's chat template and `<think>` split through the OpenAI API on a distilled (dense Qwen2)
R1 checkpoint, whose tokenizer_config.json carries the template."""

from __future__ import annotations

import asyncio

from serve.api.engine_client import LocalEngineClient
from serve.api.ingress import ApiSettings, build_openai_app
from serve.engine.reference.engine import EngineConfig, ReferenceEngine


def test_chat_on_a_distilled_model_splits_reasoning(tiny_qwen2_dir, serve_app):
    engine = ReferenceEngine.from_checkpoint(tiny_qwen2_dir, EngineConfig(kv_pages=128))
    try:
        settings = ApiSettings(served_model_name="distill", context_length=1024,
                               max_tokens_cap=64)
        server = serve_app(build_openai_app(LocalEngineClient(engine), engine.tokenizer,
                                            settings))
        messages = [{"role": "user", "content": "What is 2+2?"}]
        r = server.client().chat.completions.create(model="distill", messages=messages,
                                                    max_tokens=8, temperature=0)
        prompt = engine.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
        assert engine.tokenizer.decode(prompt, skip_special_tokens=False).endswith(
            "<｜Assistant｜><think>\n")
        assert r.usage.prompt_tokens == len(prompt) and r.usage.completion_tokens == 8
        # The random model does not close its reasoning: all of it is reasoning_content.
        assert r.choices[0].message.reasoning_content and r.choices[0].message.content is None
        assert r.usage.completion_tokens_details.reasoning_tokens == 8
    finally:
        asyncio.run(engine.shutdown())
