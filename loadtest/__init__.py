"""Load generation against any OpenAI-compatible chat endpoint (ours, SGLang, vLLM).

The package is a client: it imports nothing from `serve/` or `cluster/`. A run is

    workload (sessions of chat turns) → arrival process (a `Schedule` with due times)
    → `Runner` (one asyncio process) or `DistributedRunner` (Ray actors sharing one schedule)
    → `RequestRecord`s → `Summary` (+ server `/metrics` deltas)
    → `result.json`, `summary.md`, plots.
"""
