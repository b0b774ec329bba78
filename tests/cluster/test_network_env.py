"""Which variables of the deploying process reach a multi-node engine's rank processes."""

from __future__ import annotations

from cluster.network_env import network_env
from serve.engine.sglang.placement import PASSTHROUGH_ENV


def test_only_set_network_settings_pass():
    environ = {"NCCL_SOCKET_IFNAME": "eth0", "GLOO_SOCKET_IFNAME": "", "NVSHMEM_HCA_LIST": "mlx5_0",
               "HOME": "/root", "HF_TOKEN": "secret"}
    assert network_env(environ) == {"NCCL_SOCKET_IFNAME": "eth0", "NVSHMEM_HCA_LIST": "mlx5_0"}


def test_sglang_passes_the_same_network_settings_and_hub_access():
    assert set(PASSTHROUGH_ENV) == set(network_env({k: "x" for k in PASSTHROUGH_ENV})) | {
        "HF_TOKEN", "HF_HUB_OFFLINE"}
