"""`RankWorker`: one expert-parallel rank of the reference engine, living in a Ray actor.

A rank runs attention for its own requests over its own latent KV cache (attention data
parallel) and holds only its share of the routed experts; MoE layers exchange tokens with the
other ranks through the expert dispatcher. It reads from the checkpoint only the tensors it
holds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from cluster.expert_dispatch import ExpertDispatcher, LayerRouting
from cluster.expert_placement import ExpertPlacement
from serve.engine.reference.checkpoint import load_model_args, load_state_dict
from serve.engine.reference.model import Transformer
from serve.engine.reference.model_runner import ModelRunner, StepItem
from serve.engine.reference.moe import MoE
from serve.engine.reference.weight_layout import expert_of

if TYPE_CHECKING:
    from cluster.group_plan import RankInfo


class RankWorker:
    def __init__(self, info: RankInfo, model_path: str, placement_json: str, kv_pages: int,
                 page_size: int, threads: int = 1) -> None:
        torch.set_num_threads(threads)
        self.info = info
        args = load_model_args(model_path)
        self.placement = ExpertPlacement.from_json(placement_json)
        first_moe = args.first_k_dense_replace
        local = {layer: set(self.placement.rank_experts(layer - first_moe, info.rank))
                 for layer in range(first_moe, args.num_hidden_layers)}

        def keep(name: str) -> bool:
            owner = expert_of(name)
            return owner is None or owner[1] in local[owner[0]]

        with torch.device("meta"):
            model = Transformer(args, lambda layer: sorted(local[layer]))
        model.load_state_dict(load_state_dict(model_path, args, keep=keep), strict=True,
                              assign=True)
        self.model = model.eval()
        self.runner = ModelRunner(self.model, kv_pages, page_size)
        self.dispatcher: ExpertDispatcher | None = None

    def setup_dispatch(self) -> None:
        """Wire MoE layers to the process group; call after the rendezvous."""
        p = self.placement
        routing = [LayerRouting.from_physical(p.physical_to_logical[i], p.num_logical,
                                              p.slots_per_rank)
                   for i in range(len(p.physical_to_logical))]
        self.dispatcher = ExpertDispatcher(routing)
        for layer in self.model.model.layers:
            if isinstance(layer.mlp, MoE):
                layer.mlp.dispatcher = self.dispatcher

    def step(self, items: list[StepItem]) -> torch.Tensor | None:
        logits = self.runner.run(items)
        return logits if items else None

    def resident_expert_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for name, p in self.model.named_parameters()
                   if expert_of(name) is not None)

    def total_expert_bytes(self) -> int:
        """What every routed expert of the model would take, for comparison."""
        a = self.model.args
        moe_layers = a.num_hidden_layers - a.first_k_dense_replace
        return moe_layers * a.n_routed_experts * 3 * a.hidden_size * a.moe_intermediate_size * 4

    def expert_counts(self) -> list[list[int]]:
        return self.model.expert_counts()

    def bytes_sent(self) -> int:
        return 0 if self.dispatcher is None else self.dispatcher.bytes_sent

    def ping(self) -> int:
        return self.info.rank
