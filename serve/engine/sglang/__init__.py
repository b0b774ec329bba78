"""The SGLang backend: SGLang 0.5.23's `RayEngine` behind r1serve's `Engine` interface.

Nothing here imports `sglang` at module level; only `engine.build_sglang_engine` does, when the
registry starts this backend. `server_args`, `profiles` and `commands` work without SGLang.
"""
