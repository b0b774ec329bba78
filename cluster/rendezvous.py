"""torch.distributed rendezvous through Ray: rank 0 publishes a TCP address on its own node,
every rank joins it concurrently, and the driver waits with a deadline.

A rank that never joins would leave the others blocked inside `init_process_group` with
nothing said; instead the driver watches each rank's progress and raises `RendezvousError`
naming the ranks (and their nodes) that held the world back.

The per-rank functions (`pick_address`, `join`, `destroy`) run inside rank actors; `form_world`
runs on the driver over actors that expose them (see `cluster.placement.RankActor`).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

import ray
import torch
import torch.distributed as dist

if TYPE_CHECKING:
    from ray.actor import ActorHandle

    from cluster.group_plan import RankInfo

# A rank's progress through the rendezvous, as its actor reports it.
IDLE, JOINING, JOINED, FAILED = "idle", "joining", "joined", "failed"

_PHASE_QUERY_S = 2.0  # a rank's control thread answers at once unless its process is wedged


class RendezvousError(RuntimeError):
    """The world did not form in time. `ranks`/`node_ips` name the ranks that held it back."""

    def __init__(self, message: str, ranks: Sequence[int], node_ips: Sequence[str],
                 address: str | None) -> None:
        super().__init__(message)
        self.ranks = tuple(ranks)
        self.node_ips = tuple(node_ips)
        self.address = address


def backend_for(device: str) -> str:
    """gloo for CPU ranks, nccl for GPU ranks."""
    return "nccl" if device == "gpu" else "gloo"


def pick_address() -> str:
    """Per rank (rank 0): a free TCP port on this node's IP, as a `tcp://ip:port` init method."""
    ip = ray.util.get_node_ip_address()
    ipv6 = ":" in ip
    with socket.socket(socket.AF_INET6 if ipv6 else socket.AF_INET, socket.SOCK_STREAM) as s:
        # The store listens on every interface, so the port must be free on all of them.
        s.bind(("", 0))
        port = s.getsockname()[1]
    return f"tcp://[{ip}]:{port}" if ipv6 else f"tcp://{ip}:{port}"


def join(address: str, rank: int, world_size: int, backend: str, timeout_s: float) -> None:
    """Per rank: enter the default process group; returns once every rank has joined.

    `timeout_s` bounds the wait for the others and is also the timeout of later collectives.
    One all_reduce follows, because NCCL connects lazily: a broken interface or IB setting
    should fail here, at start-up, not in the first forward pass.
    """
    if dist.is_initialized():
        raise RuntimeError(f"rank {rank} is already in a process group; destroy() it first")
    dist.init_process_group(backend, init_method=address, rank=rank, world_size=world_size,
                            timeout=timedelta(seconds=timeout_s))
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else None
    probe = torch.ones(1, device=device)
    dist.all_reduce(probe)
    if int(probe.item()) != world_size:
        raise RuntimeError(f"rank {rank}: probe all_reduce gave {probe.item()}, expected "
                           f"{world_size}; the ranks joined different worlds")


def destroy() -> None:
    """Per rank: leave the default process group, if any (clean shutdown before the kill)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def form_world(actors: Sequence[ActorHandle], ranks: Sequence[RankInfo], backend: str,
               timeout_s: float) -> str:
    """Driver side: form the world of `actors` (rank order) and return its address.

    Raises `RendezvousError` if it does not form within `timeout_s`, or as soon as a rank
    fails, naming the ranks that held it back: first those that never started joining
    (busy, hung, dead), else those whose join failed, else everyone still waiting.
    """
    deadline = time.monotonic() + timeout_s
    address = _rank0_address(actors[0], ranks[0], timeout_s)
    refs = [a.join.remote(address, backend, timeout_s) for a in actors]
    waiting, errors = _wait_joined(refs, deadline)
    if waiting or errors:
        raise _diagnose(address, backend, timeout_s, ranks, _phases(actors), waiting, errors)
    return address


def _diagnose(address: str, backend: str, timeout_s: float, ranks: Sequence[RankInfo],
              phases: list[str], waiting: set[int], errors: dict[int, str]) -> RendezvousError:
    missing = sorted(waiting | set(errors))
    never_started = [r for r in missing if phases[r] not in (JOINING, JOINED, FAILED)]
    failed = [r for r in missing if r in errors]
    culprits = never_started or failed or missing

    def why(r: int) -> str:
        if r in errors:
            return f"failed: {errors[r]}"
        return {IDLE: "never started joining (still busy with an earlier call?)",
                JOINING: "was still waiting for the others"}.get(phases[r], phases[r])

    def who(r: int) -> str:
        return f"rank {r} (node {ranks[r].node_ip})"

    parts = [f"{who(r)} did not join: {why(r)}" for r in culprits]
    parts += [f"{who(r)} failed: {errors[r]}" for r in failed if r not in culprits]
    bystanders = [r for r in missing if r not in culprits and r not in errors]
    if bystanders:
        parts.append(f"ranks {bystanders} were waiting for them")
    if not never_started and not failed:
        hint = (f"Every rank started but they could not connect: check that all nodes reach "
                f"{address} and set GLOO_SOCKET_IFNAME / NCCL_SOCKET_IFNAME in the group's env")
    else:
        hint = ("Shut the group down and create it again; raise timeout_s if ranks are merely "
                "slow to reach the rendezvous")
    return RendezvousError(
        f"torch.distributed rendezvous at {address} ({backend}, {len(ranks)} ranks) did not "
        f"complete within {timeout_s:.1f} s: " + "; ".join(parts) + f". {hint}",
        culprits, [ranks[r].node_ip for r in culprits], address)


def _rank0_address(actor: ActorHandle, info: RankInfo, timeout_s: float) -> str:
    ref = actor.pick_address.remote()
    ready, _ = ray.wait([ref], timeout=timeout_s)
    try:
        if ready:
            return ray.get(ref)
        reason = f"did not answer within {timeout_s:.1f} s"
    except ray.exceptions.RayError as e:
        reason = f"failed: {_reason(e)}"
    raise RendezvousError(f"rank 0 (node {info.node_ip}) could not publish a rendezvous "
                          f"address: {reason}", [0], [info.node_ip], None)


def _wait_joined(refs: list[ray.ObjectRef], deadline: float) -> tuple[set[int], dict[int, str]]:
    """(ranks still waiting, rank -> error) once all joined, one failed, or the deadline."""
    rank_of = {ref: r for r, ref in enumerate(refs)}
    pending = list(refs)
    errors: dict[int, str] = {}
    while pending and not errors:
        ready, pending = ray.wait(pending, num_returns=1,
                                  timeout=max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        for ref in ready:
            try:
                ray.get(ref)
            except ray.exceptions.RayError as e:
                errors[rank_of[ref]] = _reason(e)
    return {rank_of[ref] for ref in pending}, errors


def _phases(actors: Sequence[ActorHandle]) -> list[str]:
    refs = [a.rendezvous_phase.remote() for a in actors]
    ray.wait(refs, num_returns=len(refs), timeout=_PHASE_QUERY_S)
    phases = []
    for ref in refs:
        try:
            phases.append(ray.get(ref, timeout=0))
        except ray.exceptions.GetTimeoutError:
            phases.append(f"did not answer within {_PHASE_QUERY_S:.0f} s (process hung?)")
        except ray.exceptions.RayActorError:
            phases.append("its actor is dead")
    return phases


def _reason(e: ray.exceptions.RayError) -> str:
    """One log line: the worker's own exception, or Ray's (multi-line) account of a death."""
    cause = getattr(e, "cause", None)
    if isinstance(e, ray.exceptions.RayTaskError) and cause is not None:
        return f"{type(cause).__name__}: {cause}"
    return " ".join(str(e).split())
