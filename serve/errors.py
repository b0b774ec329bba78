"""Typed errors. Each names what was wrong and the knob to turn; the HTTP layer maps
`status_code` and `code` to an OpenAI-style error body."""

from __future__ import annotations


class R1ServeError(Exception):
    """Base of every error r1serve raises on purpose.

    A client error's (4xx) `message` is for the client: it names the field and the fix. A
    server error's (5xx) may tell what only operators should see (actor ids, pids, node
    addresses); clients get its `public_message` and a request id, the log gets the rest.
    """

    status_code: int = 500
    code: str = "internal_error"
    public_message: str = "internal server error; the server log has the details"
    retry_after_s: int | None = None  # sent as Retry-After

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class InvalidRequestError(R1ServeError):
    """The request cannot be served as given (HTTP 400)."""

    status_code = 400
    code = "invalid_request_error"


class ContextLengthError(InvalidRequestError):
    """Prompt plus requested output does not fit the model's context (HTTP 400)."""

    code = "context_length_exceeded"


class CheckpointError(R1ServeError):
    """A checkpoint on disk is missing files or tensors, or has tensors of the wrong shape."""

    code = "checkpoint_error"


class ConfigError(R1ServeError):
    """A configuration value r1serve cannot run with; the message names the field."""

    code = "config_error"


class UnsupportedConfigError(R1ServeError):
    """A model config.json value this engine does not implement."""

    code = "unsupported_config"


class EngineDeadError(R1ServeError):
    """The engine stopped and cannot serve (HTTP 503)."""

    status_code = 503
    code = "engine_unavailable"
    public_message = ("no engine replica could serve this request; one is starting again or "
                      "the server is going away: retry shortly")
    # Serve replaces a failed replica in seconds (the tiny model) to minutes (R1's weights).
    retry_after_s = 5



class EngineFailedError(EngineDeadError):
    """The engine failed and cannot recover (a rank died mid-step, a step raised): its replica
    must be replaced (HTTP 503)."""
