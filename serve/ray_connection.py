"""Connecting a command (`r1serve status`, `r1serve deploy`) to a running Ray cluster.

Ray starts a local cluster (`r1serve up`) with token authentication and keeps the token in
~/.ray/auth_token, yet a process that connects to a given address (`--address`, RAY_ADDRESS)
uses a token only when RAY_AUTH_MODE=token says so; without it Ray retries InvalidAuthToken for
20 s and fails with a traceback. So a token at hand is used, as Ray itself does for
`address="auto"` (a token sent to a cluster without authentication is ignored), and a failed
connection says what to set.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from contextlib import nullcontext

from cluster.local_cluster import loopback_node_ip
from serve.errors import R1ServeError

AUTH_MODE_ENV = "RAY_AUTH_MODE"


class RayConnectionError(R1ServeError):
    """No running Ray cluster could be reached at the address."""

    code = "ray_connection_failed"


def use_token_if_available() -> bool:
    """Turn on token authentication for this process when RAY_AUTH_MODE is unset and a token
    is at hand (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token); return whether
    tokens are used."""
    if AUTH_MODE_ENV in os.environ:
        return os.environ[AUTH_MODE_ENV].lower() == "token"
    from ray._private.authentication import authentication_token_setup as setup

    quiet = logging.getLogger(setup.__name__)  # it warns that it turned tokens on: we asked
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        return setup.maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    finally:
        quiet.setLevel(level)


def connect(address: str | None) -> None:
    """`ray.init` onto the cluster at `address` (None: RAY_ADDRESS, else the local one)."""
    import ray
    from ray.exceptions import RayError

    with_token = use_token_if_available()
    try:
        with loopback_node_ip() if _on_loopback(address) else nullcontext():
            # The cluster's own logs stay in the cluster: a command prints only its answer.
            ray.init(address=address or "auto", logging_level=logging.WARNING,
                     ignore_reinit_error=True, log_to_driver=False)
    except (ConnectionError, RayError) as e:
        shown = address or os.environ.get("RAY_ADDRESS") or "auto"
        raise RayConnectionError(connection_advice(shown, with_token, e)) from None


def _on_loopback(address: str | None) -> bool:
    """Whether the cluster at `address` (None: RAY_ADDRESS, else the local one) listens on
    loopback, as the one `r1serve up` starts does: this process's node IP must then be
    loopback too, or Ray looks for the cluster's raylet at the host's routable IP."""
    from ray._private.services import get_ray_address_from_environment

    # Not Ray's canonical form: that turns a loopback host into the routable IP.
    try:
        given = address or get_ray_address_from_environment("auto", None)
    except Exception:  # no cluster recorded here: ray.init says so
        return False
    host = (given or "").removeprefix("ray://").rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def connection_advice(address: str, with_token: bool, error: BaseException) -> str:
    """What went wrong connecting to `address`, and what to set."""
    auth = ("the token this process sent was refused: set RAY_AUTH_TOKEN (or a file at "
            "RAY_AUTH_TOKEN_PATH) to the cluster's own token, which `ray get-auth-token` "
            "prints on its head node" if with_token else
            "if the cluster uses token authentication (Ray's default for a cluster it starts, "
            "as `r1serve up` does), set RAY_AUTH_MODE=token and its token in RAY_AUTH_TOKEN "
            "or ~/.ray/auth_token (`ray get-auth-token` prints it on the head node)")
    return (f"cannot connect to the Ray cluster at {address}: {error}. Check the address "
            f"(--address or RAY_ADDRESS; the GCS address, host:6379 by default); {auth}")
