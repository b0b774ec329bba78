"""Expert-parallel placement as data: which logical expert sits in which physical slot.

An MoE layer with `num_logical` routed experts runs on `num_ranks` expert-parallel ranks, each
holding `slots_per_rank` expert weights. Physical slot `s` lives on rank `s // slots_per_rank`.
With redundancy (EPLB) there are more slots than logical experts and a hot expert occupies
several slots; the dispatcher splits its tokens among them.

Layer indices here count MoE layers only (R1: model layers `first_k_dense_replace` .. 60 are
MoE layers 0 .. 57).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

_FORMAT = "r1serve.expert_placement"
_VERSION = 1


@dataclass(frozen=True)
class ExpertPlacement:
    """Per MoE layer, the physical slot -> logical expert map. Validated on construction."""

    num_logical: int
    num_ranks: int
    slots_per_rank: int
    physical_to_logical: tuple[tuple[int, ...], ...]

    def __post_init__(self) -> None:
        for name in ("num_logical", "num_ranks", "slots_per_rank"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"expert placement: {name} must be a positive integer, "
                                 f"got {value!r}")
        if not self.physical_to_logical:
            raise ValueError("expert placement: physical_to_logical has no layers")
        num_slots = self.num_slots
        if num_slots < self.num_logical:
            raise ValueError(
                f"expert placement: {self.num_ranks} ranks x {self.slots_per_rank} slots = "
                f"{num_slots} slots cannot hold {self.num_logical} logical experts")
        for layer, slots in enumerate(self.physical_to_logical):
            if len(slots) != num_slots:
                raise ValueError(
                    f"expert placement: layer {layer} has {len(slots)} slots, expected "
                    f"num_ranks * slots_per_rank = {self.num_ranks} * {self.slots_per_rank} "
                    f"= {num_slots}")
            bad = [e for e in slots
                   if isinstance(e, bool) or not isinstance(e, int)
                   or not 0 <= e < self.num_logical]
            if bad:
                raise ValueError(f"expert placement: layer {layer} names expert {bad[0]!r}, "
                                 f"outside 0..{self.num_logical - 1}")
            missing = sorted(set(range(self.num_logical)) - set(slots))
            if missing:
                raise ValueError(
                    f"expert placement: layer {layer} has no replica of logical expert(s) "
                    f"{missing[:8]}{' ...' if len(missing) > 8 else ''}; every expert needs "
                    f">= 1 slot")

    @property
    def num_layers(self) -> int:
        """How many MoE layers the placement covers."""
        return len(self.physical_to_logical)

    @property
    def num_slots(self) -> int:
        """Physical slots per layer (`num_ranks * slots_per_rank`)."""
        return self.num_ranks * self.slots_per_rank

    @property
    def num_redundant(self) -> int:
        """Slots beyond one per logical expert."""
        return self.num_slots - self.num_logical

    def rank_experts(self, layer: int, rank: int) -> tuple[int, ...]:
        """Logical experts resident on `rank` in MoE layer `layer`, in slot order."""
        self._check_layer(layer)
        if not 0 <= rank < self.num_ranks:
            raise IndexError(f"rank {rank} outside 0..{self.num_ranks - 1}")
        start = rank * self.slots_per_rank
        return self.physical_to_logical[layer][start:start + self.slots_per_rank]

    def replicas(self, layer: int, logical: int) -> tuple[int, ...]:
        """Physical slots holding logical expert `logical` in MoE layer `layer`, ascending."""
        self._check_layer(layer)
        if not 0 <= logical < self.num_logical:
            raise IndexError(f"logical expert {logical} outside 0..{self.num_logical - 1}")
        return tuple(s for s, e in enumerate(self.physical_to_logical[layer]) if e == logical)

    def replica_counts(self) -> np.ndarray:
        """Replicas per logical expert, int64 array [layers, num_logical]."""
        table = np.asarray(self.physical_to_logical, dtype=np.int64)
        return np.stack([np.bincount(row, minlength=self.num_logical) for row in table])

    def rank_loads(self, counts: np.ndarray) -> np.ndarray:
        """Token load per rank, float64 array [layers, num_ranks].

        `counts[layer, e]` is how many tokens logical expert `e` received in that MoE layer; a
        replicated expert's load is split evenly among its replicas, as the dispatcher does.
        """
        counts = np.asarray(counts, dtype=np.float64)
        expected = (self.num_layers, self.num_logical)
        if counts.shape != expected:
            raise ValueError(f"counts has shape {counts.shape}, expected [layers, experts] = "
                             f"{list(expected)} for this placement")
        table = np.asarray(self.physical_to_logical, dtype=np.int64)
        per_replica = counts / self.replica_counts()
        slot_loads = np.take_along_axis(per_replica, table, axis=1)
        return slot_loads.reshape(self.num_layers, self.num_ranks, self.slots_per_rank).sum(-1)

    def to_json(self) -> str:
        """The placement as a JSON document operators save and load with `from_json`."""
        header = {"format": _FORMAT, "version": _VERSION, "num_logical": self.num_logical,
                  "num_ranks": self.num_ranks, "slots_per_rank": self.slots_per_rank,
                  "num_layers": self.num_layers}
        # One line per layer keeps a 58 x 288 table readable and diffable.
        rows = ",\n".join(f"    {json.dumps(list(row))}" for row in self.physical_to_logical)
        fields = "".join(f"  {json.dumps(k)}: {json.dumps(v)},\n" for k, v in header.items())
        return f'{{\n{fields}  "physical_to_logical": [\n{rows}\n  ]\n}}\n'

    @classmethod
    def from_json(cls, text: str) -> ExpertPlacement:
        """Parse and validate a document written by `to_json`; ValueError says what is wrong."""
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"expert placement: not valid JSON: {e}") from e
        if not isinstance(doc, dict):
            raise ValueError("expert placement: expected a JSON object")
        if doc.get("format", _FORMAT) != _FORMAT or doc.get("version", _VERSION) != _VERSION:
            raise ValueError(f"expert placement: unsupported format {doc.get('format')!r} "
                             f"version {doc.get('version')!r}; expected {_FORMAT} v{_VERSION}")
        fields = ("num_logical", "num_ranks", "slots_per_rank", "physical_to_logical")
        missing = [f for f in fields if f not in doc]
        if missing:
            raise ValueError(f"expert placement: missing field(s) {missing}")
        table = doc["physical_to_logical"]
        if not isinstance(table, list) or not all(isinstance(r, list) for r in table):
            raise ValueError("expert placement: physical_to_logical must be a list of lists "
                             "(one list of logical expert ids per MoE layer)")
        if "num_layers" in doc and doc["num_layers"] != len(table):
            raise ValueError(f"expert placement: num_layers is {doc['num_layers']} but "
                             f"physical_to_logical has {len(table)} layers")
        return cls(num_logical=doc["num_logical"], num_ranks=doc["num_ranks"],
                   slots_per_rank=doc["slots_per_rank"],
                   physical_to_logical=tuple(tuple(row) for row in table))

    def _check_layer(self, layer: int) -> None:
        if not 0 <= layer < self.num_layers:
            raise IndexError(f"MoE layer {layer} outside 0..{self.num_layers - 1}")


def contiguous(num_logical: int, num_ranks: int, num_layers: int) -> ExpertPlacement:
    """The plain EP layout: rank r holds experts [r*E/ep, (r+1)*E/ep) in every layer."""
    if num_ranks < 1 or num_layers < 1:
        raise ValueError(f"contiguous placement needs num_ranks >= 1 and num_layers >= 1, "
                         f"got {num_ranks} and {num_layers}")
    if num_logical % num_ranks:
        raise ValueError(f"contiguous placement: {num_logical} experts do not divide evenly over "
                         f"{num_ranks} EP ranks; choose an EP size that divides {num_logical}")
    row = tuple(range(num_logical))
    return ExpertPlacement(num_logical=num_logical, num_ranks=num_ranks,
                           slots_per_rank=num_logical // num_ranks,
                           physical_to_logical=(row,) * num_layers)
