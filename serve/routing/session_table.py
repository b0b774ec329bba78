"""`SessionTable`: which replica served each client session last (bounded, least recent out)."""

from __future__ import annotations

from collections import OrderedDict


class SessionTable:
    """session id -> replica id, keeping the `capacity` most recently used sessions."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._table: OrderedDict[str, str] = OrderedDict()

    def get(self, session_id: str) -> str | None:
        replica = self._table.get(session_id)
        if replica is not None:
            self._table.move_to_end(session_id)
        return replica

    def put(self, session_id: str, replica_id: str) -> None:
        self._table[session_id] = replica_id
        self._table.move_to_end(session_id)
        while len(self._table) > self._capacity:
            self._table.popitem(last=False)

    def forget_replica(self, replica_id: str) -> None:
        """A replica is gone: its sessions route afresh (by prefix, which still finds any copy
        of their context elsewhere)."""
        for s in [s for s, r in self._table.items() if r == replica_id]:
            del self._table[s]

    def __len__(self) -> int:
        return len(self._table)
