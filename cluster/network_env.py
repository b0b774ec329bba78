"""The environment variables that pick a node's network interfaces and fabric for
torch.distributed, NCCL and NVSHMEM; a multi-node engine passes them from the deploying process
to its rank processes."""

from __future__ import annotations

from collections.abc import Mapping

NETWORK_ENV = (
    "NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME", "TP_SOCKET_IFNAME", "NCCL_IB_HCA",
    "NCCL_IB_GID_INDEX", "NCCL_IB_DISABLE", "NCCL_NET_GDR_LEVEL", "NCCL_CROSS_NIC",
    "NCCL_DEBUG", "NVSHMEM_IB_GID_INDEX", "NVSHMEM_HCA_LIST",
)


def network_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The network settings `environ` sets (non-empty)."""
    return {k: environ[k] for k in NETWORK_ENV if environ.get(k)}
