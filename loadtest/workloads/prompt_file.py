"""A JSONL file of explicit prompts or chat messages."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from loadtest.request_spec import Message, RequestSpec, Session


@dataclass(frozen=True)
class PromptFile:
    """One request per line: `{"prompt": "..."}` or `{"messages": [{"role", "content"}, ...]}`,
    with optional `"max_tokens"` (else `default_max_tokens`) and optional `"timestamp"` in
    seconds. When every line has a timestamp the file replays as a trace (`timed`)."""

    path: Path
    default_max_tokens: int = 4096
    limit: int | None = None

    @property
    def timed(self) -> bool:
        return all("timestamp" in row for row in self._rows()) and bool(self._rows())

    def sessions(self) -> list[Session]:
        rows = self._rows()
        timed = self.timed
        result = []
        for i, row in enumerate(rows):
            spec = RequestSpec(request_id=f"file-{i}", messages=_messages(row, self.path, i),
                               max_tokens=int(row.get("max_tokens", self.default_max_tokens)))
            arrival = float(row["timestamp"]) - float(rows[0]["timestamp"]) if timed else 0.0
            result.append(Session(session_id=f"file-{i}", turns=(spec,), arrival_s=arrival))
        if timed:
            result.sort(key=lambda s: s.arrival_s)
        return result

    def _rows(self) -> list[dict]:
        rows = []
        with open(self.path) as f:
            for line in f:
                if self.limit is not None and len(rows) >= self.limit:
                    break
                if line.strip():
                    rows.append(json.loads(line))
        return rows


def _messages(row: dict, path: Path, index: int) -> tuple[Message, ...]:
    if "messages" in row:
        return tuple(Message(str(m["role"]), str(m["content"])) for m in row["messages"])
    if "prompt" in row:
        return (Message("user", str(row["prompt"])),)
    raise ValueError(f"{path}: line {index + 1} has neither 'prompt' nor 'messages'")
