"""Capacity planning for R1: sizes counted from config.json, and what fits where."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from cluster.capacity import (
    GPUS,
    Layout,
    ModelShape,
    count_weights,
    kv_bytes_per_token,
    plan,
)

SHARED_CONFIG = Path(__file__).resolve().parents[3] / "shared/data/deepseek-r1/config.json"
SHIPPED_CONFIG = Path(__file__).resolve().parents[2] / "cluster/data/deepseek_r1_config.json"


@pytest.fixture(scope="module")
def r1() -> dict:
    return json.loads(SHIPPED_CONFIG.read_text())


def test_shipped_config_is_r1s_config() -> None:
    if not SHARED_CONFIG.exists():
        pytest.skip("shared data not present")
    assert json.loads(SHIPPED_CONFIG.read_text()) == json.loads(SHARED_CONFIG.read_text())


def test_r1_parameter_count_and_size(r1: dict) -> None:
    shape = ModelShape.from_config(r1)
    assert shape.num_moe_layers == 58
    weights = count_weights(shape)
    # DeepSeek quotes 671B for the main model; we count 671,026,419,200.
    assert 660e9 <= weights.parameters <= 690e9
    # FP8 linears with fp32 128x128 block scales, bf16 embeddings/head/gates/norms: ~673 GB.
    assert 670e9 <= weights.total_bytes <= 676e9
    # With the MTP layer DeepSeek quotes 685B (counting its copies of embedding and head,
    # which are shared in memory and not counted here).
    mtp = count_weights(shape, include_mtp=True)
    assert 680e9 <= mtp.parameters <= 686e9


def test_counts_follow_from_config_fields(r1: dict) -> None:
    base = count_weights(ModelShape.from_config(r1))
    fewer_experts = count_weights(ModelShape.from_config({**r1, "n_routed_experts": 128}))
    one_expert = 3 * r1["hidden_size"] * r1["moe_intermediate_size"]
    gate_row = r1["hidden_size"] + 1  # gate weight row and its correction bias
    assert base.parameters - fewer_experts.parameters == 128 * 58 * (one_expert + gate_row)
    # Without FP8 quantization every linear weight is bf16: about twice the bytes.
    bf16 = count_weights(ModelShape.from_config({**r1, "quantization_config": None}))
    assert bf16.parameters == base.parameters
    assert 1.95 < bf16.total_bytes / base.total_bytes < 2.0


def test_kv_bytes_per_token(r1: dict) -> None:
    shape = ModelShape.from_config(r1)
    assert kv_bytes_per_token(shape, "bf16") == 61 * 576 * 2 == 70_272
    assert kv_bytes_per_token(shape, "fp8") == 70_272 // 2
    result = plan(r1, "h200-141g", Layout(kv_dtype="fp8"))
    assert result.kv_bytes_per_token == 35_136
    bf16 = plan(r1, "h200-141g", Layout())
    assert result.kv_cache_tokens == pytest.approx(2 * bf16.kv_cache_tokens, abs=1)


@pytest.mark.parametrize("dp_attention", [False, True])
def test_one_h200_node_fits(r1: dict, dp_attention: bool) -> None:
    result = plan(r1, "h200-141g", Layout(nodes=1, dp_attention=dp_attention))
    assert result.fits and result.reason is None and result.smallest_fitting is None
    assert result.max_concurrent_requests >= 8  # at 32K tokens each
    assert result.weight_bytes_per_gpu + result.kv_bytes_per_gpu == result.usable_bytes_per_gpu


@pytest.mark.parametrize("gpu", ["h100-80g", "h800-80g"])
@pytest.mark.parametrize("dp_attention", [False, True])
def test_one_80g_node_does_not_fit_and_two_would(r1: dict, gpu: str,
                                                 dp_attention: bool) -> None:
    result = plan(r1, gpu, Layout(nodes=1, dp_attention=dp_attention))
    assert not result.fits
    assert "weights need" in result.reason and "per GPU" in result.reason
    assert result.max_concurrent_requests == 0 and result.kv_cache_tokens == 0
    assert result.smallest_fitting is not None
    assert (result.smallest_fitting.nodes, result.smallest_fitting.num_gpus) == (2, 16)
    assert plan(r1, gpu, result.smallest_fitting).fits


def test_tp_without_dp_attention_splits_everything_evenly(r1: dict) -> None:
    weights = count_weights(ModelShape.from_config(r1))
    result = plan(r1, "h200-141g", Layout(nodes=1))
    # Only the router gates and norms (~0.2 GB) are held whole on every GPU.
    assert result.weight_bytes_per_gpu == pytest.approx(weights.total_bytes / 8, rel=0.01)
    # The MLA latent is replicated over TP ranks: capacity is one GPU's pool.
    assert result.kv_cache_tokens == result.kv_bytes_per_gpu // 70_272


def test_dp_attention_holds_attention_whole_and_sums_kv(r1: dict) -> None:
    tp = plan(r1, "h200-141g", Layout(nodes=2))
    dp = plan(r1, "h200-141g", Layout(nodes=2, dp_attention=True))
    assert dp.weight_bytes_per_gpu > tp.weight_bytes_per_gpu
    assert dp.kv_cache_tokens == (dp.kv_bytes_per_gpu // 70_272) * 16
    assert dp.max_concurrent_requests > tp.max_concurrent_requests


@pytest.mark.parametrize("dp_attention", [False, True])
def test_capacity_grows_with_nodes(r1: dict, dp_attention: bool) -> None:
    tokens = [plan(r1, "h200-141g", Layout(nodes=n, dp_attention=dp_attention)).kv_cache_tokens
              for n in (1, 2, 4)]
    assert tokens[0] < tokens[1] < tokens[2]


def test_redundant_experts_and_mtp_cost_memory(r1: dict) -> None:
    base = plan(r1, "h200-141g", Layout(nodes=4, dp_attention=True))
    eplb = plan(r1, "h200-141g", Layout(nodes=4, dp_attention=True, redundant_experts=32))
    mtp = plan(r1, "h200-141g", Layout(nodes=4, dp_attention=True, mtp=True))
    expert_bytes = count_weights(ModelShape.from_config(r1)).one_expert_bytes
    assert eplb.weight_bytes_per_gpu - base.weight_bytes_per_gpu == 58 * expert_bytes
    assert mtp.weight_bytes_per_gpu > base.weight_bytes_per_gpu
    assert mtp.kv_bytes_per_token == 62 * 576 * 2


def test_weights_that_leave_no_room_for_one_request(r1: dict) -> None:
    # 2 x 8 H100 with DP attention: 60 GB of weights per GPU leave ~1.6 GB at fraction 0.72,
    # about 23K tokens, fewer than one 32K request. 3 nodes (24 GPUs) cannot split 256 experts
    # evenly, so the next layout that fits is 4 nodes.
    result = plan(r1, "h100-80g", Layout(nodes=2, dp_attention=True, memory_fraction=0.72))
    assert not result.fits
    assert "fewer than one 32768-token request" in result.reason
    assert result.smallest_fitting is not None and result.smallest_fitting.nodes == 4


def test_no_layout_fits_when_memory_fraction_is_tiny(r1: dict) -> None:
    result = plan(r1, "h100-80g", Layout(memory_fraction=0.01, dp_attention=True), max_nodes=4)
    assert not result.fits and result.smallest_fitting is None
    assert "no layout of up to 4 nodes fits" in result.reason


@pytest.mark.parametrize(("layout", "message"), [
    (Layout(nodes=32), "128 heads"),
    (Layout(ep=3), "EP size 3 must divide"),
    (Layout(redundant_experts=4), "change --ep or --redundant"),
    (Layout(memory_fraction=1.5), "memory_fraction"),
    (Layout(context=0), "context"),
    (Layout(context=200_000), "max_position_embeddings 163840"),
])
def test_invalid_layouts_are_rejected(r1: dict, layout: Layout, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan(r1, "h200-141g", layout)


def test_unknown_gpu_and_config_are_rejected(r1: dict) -> None:
    with pytest.raises(ValueError, match="unknown GPU 'a100'"):
        plan(r1, "a100", Layout())
    with pytest.raises(ValueError, match="hidden_size"):
        plan({k: v for k, v in r1.items() if k != "hidden_size"}, "h200-141g", Layout())


def test_gpu_specs() -> None:
    assert GPUS["h100-80g"].memory_bytes == GPUS["h800-80g"].memory_bytes == 81_559 << 20
    assert GPUS["h200-141g"].memory_bytes == 143_771 << 20


def test_plan_is_plain_data(r1: dict) -> None:
    result = plan(r1, "h100-80g", Layout())
    doc = json.loads(json.dumps(result.to_dict()))
    assert doc["gpu"] == "h100-80g" and doc["fits"] is False
    assert doc["smallest_fitting"]["nodes"] == 2 and doc["layout"]["ep"] == 8
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.fits = True  # type: ignore[misc]
