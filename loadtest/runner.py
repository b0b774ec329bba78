"""Runs a schedule from one asyncio process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import aiohttp

from loadtest.chat_client import ChatClient
from loadtest.endpoint import Endpoint
from loadtest.record import NOT_SENT, RequestRecord
from loadtest.request_spec import Message, Session
from loadtest.schedule import Schedule

OnRecord = Callable[[RequestRecord], None]


class Runner:
    """Sends a `Schedule`'s requests at their due times and collects a record for each.

    Every scheduled request yields exactly one record: turns left unsent (an earlier turn of
    their session failed, or a closed-loop run's duration was over) are recorded with
    `error_kind="not_sent"`.
    """

    def __init__(self, endpoint: Endpoint, worker: int = 0,
                 on_record: OnRecord | None = None) -> None:
        self._endpoint = endpoint
        self._worker = worker
        self._on_record = on_record
        self._records: list[RequestRecord] = []

    async def run(self, schedule: Schedule, origin: float | None = None) -> list[RequestRecord]:
        """Run `schedule` with due times relative to `origin` (a `time.perf_counter()` value;
        default: now) and return the records in completion order."""
        origin = time.perf_counter() if origin is None else origin
        self._records = []
        connector = aiohttp.TCPConnector(limit=0, force_close=False)
        async with aiohttp.ClientSession(connector=connector) as http:
            client = ChatClient(self._endpoint, http, origin, self._worker)
            if schedule.concurrency is None:
                await self._open_loop(client, schedule, origin)
            else:
                await self._closed_loop(client, schedule, origin)
        return self._records

    async def _open_loop(self, client: ChatClient, schedule: Schedule, origin: float) -> None:
        tasks = []
        for session in sorted(schedule.sessions, key=lambda s: s.arrival_s):
            await _sleep_until(origin + session.arrival_s)
            tasks.append(asyncio.create_task(
                self._session(client, session, session.arrival_s, origin)))
        await asyncio.gather(*tasks)

    async def _closed_loop(self, client: ChatClient, schedule: Schedule, origin: float) -> None:
        pending = iter(schedule.sessions)
        deadline = None if schedule.duration_s is None else origin + schedule.duration_s

        async def slot(open_s: float) -> None:
            await _sleep_until(origin + open_s)
            # A slot's next session is due the moment its previous one ends.
            due = open_s
            while (session := _next(pending)) is not None:
                if deadline is not None and time.perf_counter() > deadline:
                    self._skip(session, 0, due, "the run's duration was over")
                    continue
                due = await self._session(client, session, due, origin)

        await asyncio.gather(*(slot(t) for t in schedule.slot_open_s))

    async def _session(self, client: ChatClient, session: Session, due_s: float,
                       origin: float) -> float:
        """Run one session's turns in order; return when it ended (relative to origin)."""
        history: list[Message] = []
        history_tokens = 0
        for i, turn in enumerate(session.turns):
            if i:
                due_s += turn.think_time_s
                await _sleep_until(origin + due_s)
            expected = turn.expected_prompt_tokens
            if expected is not None and session.carry_history:
                expected += history_tokens
            sent = await client.send(turn, [*history, *turn.messages], due_s, session.session_id,
                                     expected, keep_answer=session.carry_history)
            self._add(sent.record)
            due_s = sent.record.end_s
            if not sent.record.ok:
                self._skip(session, i + 1, due_s, f"turn {i} failed ({sent.record.error_kind})")
                break
            if session.carry_history:
                history += [*turn.messages, Message("assistant", sent.answer)]
                history_tokens = (expected or 0) + sent.record.answer_tokens
        return due_s

    def _skip(self, session: Session, first: int, at_s: float, why: str) -> None:
        for turn in session.turns[first:]:
            self._add(RequestRecord(
                request_id=turn.request_id, session_id=session.session_id, worker=self._worker,
                due_s=at_s, sent_s=at_s, end_s=at_s, max_tokens=turn.max_tokens,
                expected_prompt_tokens=turn.expected_prompt_tokens, error_kind=NOT_SENT,
                error=why))

    def _add(self, record: RequestRecord) -> None:
        self._records.append(record)
        if self._on_record is not None:
            self._on_record(record)


async def _sleep_until(deadline: float) -> None:
    delay = deadline - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)


def _next(sessions: Iterator[Session]) -> Session | None:
    return next(sessions, None)
