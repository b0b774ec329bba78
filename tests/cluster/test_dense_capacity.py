"""Capacity plans of the distilled R1 models (dense Qwen2 and Llama): parameters and KV bytes
counted from config.json, tensor-parallel splits, the smallest layout, and `r1serve plan`."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from cluster.capacity import Layout
from cluster.commands import _distill_shapes
from cluster.dense_capacity import (
    DenseShape,
    count_dense_weights,
    dense_kv_bytes_per_token,
    plan_dense,
)
from serve.cli import main

SHAPES = _distill_shapes()
# Parameter counts the model cards and transformers report, in billions.
PUBLISHED_B = {"distill-qwen-1.5b": 1.777, "distill-qwen-7b": 7.616, "distill-llama-8b": 8.030,
               "distill-qwen-14b": 14.770, "distill-qwen-32b": 32.764,
               "distill-llama-70b": 70.554}


@pytest.mark.parametrize("name", sorted(PUBLISHED_B))
def test_parameters_counted_from_config(name: str) -> None:
    weights = count_dense_weights(DenseShape.from_config(SHAPES[name]))
    assert weights.parameters / 1e9 == pytest.approx(PUBLISHED_B[name], abs=1e-3)
    assert weights.total_bytes == 2 * weights.parameters  # bf16, as the distills ship


def test_kv_bytes_per_token_and_its_tensor_parallel_share() -> None:
    qwen = DenseShape.from_config(SHAPES["distill-qwen-1.5b"])
    llama = DenseShape.from_config(SHAPES["distill-llama-70b"])
    assert dense_kv_bytes_per_token(qwen) == 28 * 2 * 2 * 128 * 2 == 28_672
    assert dense_kv_bytes_per_token(llama) == 80 * 2 * 8 * 128 * 2 == 327_680
    assert dense_kv_bytes_per_token(llama, tp=8) == 327_680 // 8
    # more ranks than KV heads: each rank still holds a whole head
    assert dense_kv_bytes_per_token(qwen, tp=4) == dense_kv_bytes_per_token(qwen, tp=2)
    assert dense_kv_bytes_per_token(qwen, "fp8") == 28_672 // 2


def test_smallest_layouts() -> None:
    one = Layout(gpus_per_node=1, nodes=1)
    small = plan_dense(SHAPES["distill-qwen-7b"], "h100-80g", one)
    assert small.fits and small.dense and small.smallest_fitting.num_gpus == 1
    assert small.max_concurrent_requests >= 16
    big = plan_dense(SHAPES["distill-llama-70b"], "h200-141g", one)
    assert not big.fits and "weights need" in big.reason
    assert big.smallest_fitting.num_gpus == 2
    four = plan_dense(SHAPES["distill-llama-70b"], "h200-141g", Layout(gpus_per_node=4))
    assert four.fits and four.kv_cache_tokens > 4 * 32_768
    # 32B on one 80 GB GPU holds one 32K request; two GPUs hold many more
    one_gpu = plan_dense(SHAPES["distill-qwen-32b"], "h100-80g", one)
    two = plan_dense(SHAPES["distill-qwen-32b"], "h100-80g", Layout(gpus_per_node=2))
    assert one_gpu.max_concurrent_requests == 1 and two.max_concurrent_requests > 8


@pytest.mark.parametrize(("layout", "message"), [
    (Layout(gpus_per_node=8, ep=8), "no experts"),
    (Layout(gpus_per_node=8, dp_attention=True), "--dp-attention"),
    (Layout(gpus_per_node=8, nodes=2), "one node"),
    (Layout(gpus_per_node=8), "--gpus-per-node 1 or 2 or 4")])
def test_layouts_a_dense_model_cannot_use_are_named(layout: Layout, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan_dense(SHAPES["distill-qwen-1.5b"], "h100-80g", layout)


@pytest.mark.parametrize("file", ["distill_qwen_1.5b_config.json",
                                  "distill_llama_8b_config.json"])
def test_shapes_match_the_engines_shipped_configs(file: str) -> None:
    config = json.loads((resources.files("serve.engine.reference") / "data" / file).read_text())
    name = config["architectures"][0].removesuffix("ForCausalLM").lower()
    shape = SHAPES["distill-qwen-1.5b" if name == "qwen2" else "distill-llama-8b"]
    assert {k: config[k] for k in shape} == shape


def test_plan_command_for_a_distill(capsys) -> None:
    code = main(["plan", "--gpu", "h200-141g", "--gpus-per-node", "1", "--nodes", "1",
                 "--model", "distill-llama-70b"])
    out = capsys.readouterr().out
    assert code == 1 and "KV bytes per token        327,680 (bf16)" in out
    assert "smallest layout that fits: 2 GPUs of one node, tensor parallel 2" in out
    assert main(["plan", "--gpu", "h100-80g", "--gpus-per-node", "1", "--nodes", "1",
                 "--model", "distill-qwen-1.5b", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["dense"] and doc["kv_bytes_per_token"] == 28_672
