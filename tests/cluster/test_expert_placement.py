"""ExpertPlacement: the contiguous layout, lookups, loads, and the JSON file operators keep."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cluster.expert_placement import ExpertPlacement, contiguous


def test_contiguous_gives_each_rank_a_run_of_experts() -> None:
    p = contiguous(num_logical=256, num_ranks=32, num_layers=58)
    assert (p.num_layers, p.slots_per_rank, p.num_redundant) == (58, 8, 0)
    assert p.rank_experts(0, 0) == tuple(range(8))
    assert p.rank_experts(57, 31) == tuple(range(248, 256))
    assert p.replicas(3, 100) == (100,)


def test_contiguous_rejects_an_ep_size_that_does_not_divide_the_experts() -> None:
    with pytest.raises(ValueError, match=r"256 experts.*24 EP ranks"):
        contiguous(256, 24, 1)


def _redundant() -> ExpertPlacement:
    # 4 experts, 2 ranks x 3 slots: expert 0 has three replicas in layer 0.
    return ExpertPlacement(num_logical=4, num_ranks=2, slots_per_rank=3,
                           physical_to_logical=((0, 1, 0, 2, 3, 0), (0, 1, 2, 3, 3, 3)))


def test_replicas_and_rank_experts_follow_the_slot_map() -> None:
    p = _redundant()
    assert p.replicas(0, 0) == (0, 2, 5)
    assert p.replicas(1, 3) == (3, 4, 5)
    assert p.rank_experts(0, 1) == (2, 3, 0)
    assert p.replica_counts().tolist() == [[3, 1, 1, 1], [1, 1, 1, 3]]
    with pytest.raises(IndexError):
        p.rank_experts(0, 2)
    with pytest.raises(IndexError):
        p.replicas(2, 0)


def test_rank_loads_split_an_expert_evenly_over_its_replicas() -> None:
    counts = np.array([[30, 10, 20, 40], [6, 6, 6, 30]])
    loads = _redundant().rank_loads(counts)
    # layer 0: rank 0 = 10 + 10 + 10 (expert 0 twice), rank 1 = 20 + 40 + 10;
    # layer 1: rank 0 = 6 + 6 + 6, rank 1 holds all three replicas of expert 3
    assert loads.tolist() == [[30.0, 70.0], [18.0, 30.0]]
    assert loads.sum() == counts.sum()
    with pytest.raises(ValueError, match="shape"):
        _redundant().rank_loads(np.ones((2, 5)))


def test_json_round_trip(tmp_path) -> None:
    p = _redundant()
    path = tmp_path / "placement.json"
    path.write_text(p.to_json())
    assert ExpertPlacement.from_json(path.read_text()) == p
    assert json.loads(path.read_text())["num_layers"] == 2


def _doc(**change) -> str:
    doc = json.loads(_redundant().to_json())
    doc.update(change)
    return json.dumps(doc)


@pytest.mark.parametrize(("change", "message"), [
    ({"physical_to_logical": [[0, 1, 0, 2, 0, 0], [0, 1, 2, 3, 3, 3]]},
     r"layer 0 has no replica of logical expert\(s\) \[3\]"),
    ({"physical_to_logical": [[0, 1, 2, 3], [0, 1, 2, 3, 3, 3]]}, "layer 0 has 4 slots"),
    ({"physical_to_logical": [[0, 1, 2, 3, 9, 0], [0, 1, 2, 3, 3, 3]]}, "expert 9"),
    ({"slots_per_rank": 1}, "cannot hold 4 logical experts"),
    ({"num_layers": 3}, "num_layers is 3"),
    ({"num_ranks": 0}, "num_ranks must be a positive integer"),
    ({"format": "something-else"}, "unsupported format"),
])
def test_from_json_rejects_inconsistent_files(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ExpertPlacement.from_json(_doc(**change))


def test_from_json_rejects_missing_fields_and_bad_json() -> None:
    with pytest.raises(ValueError, match="missing field"):
        ExpertPlacement.from_json('{"num_logical": 4}')
    with pytest.raises(ValueError, match="not valid JSON"):
        ExpertPlacement.from_json("{")
