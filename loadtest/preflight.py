"""Checks before a run, so a wrong URL, key or model fails in seconds with a clear message."""

from __future__ import annotations

import aiohttp

from loadtest.endpoint import Endpoint


class PreflightError(Exception):
    """The endpoint cannot serve the run; the message says which option to fix."""


async def resolve_model(endpoint: Endpoint, timeout_s: float = 10.0) -> str:
    """Check that `endpoint` answers `/v1/models`, accepts the API key and serves the model.

    Returns the model to use: `endpoint.model`, or the server's first model when that is empty.
    Raises `PreflightError` otherwise.
    """
    url = endpoint.models_url
    if not url.startswith(("http://", "https://")):
        raise PreflightError(f"--url {endpoint.base_url!r} is not an http(s) URL; "
                             "pass e.g. --url http://127.0.0.1:8000")
    try:
        async with aiohttp.ClientSession() as http, http.get(
                url, headers=endpoint.headers(),
                timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            status = resp.status
            body = await resp.text()
            payload = await resp.json(content_type=None) if status == 200 else None
    except aiohttp.ClientConnectorError as e:
        raise PreflightError(f"cannot connect to {endpoint.base_url}: {e.os_error or e}. "
                             "Is the server running, and is --url right?") from e
    except TimeoutError as e:
        raise PreflightError(f"{url} did not answer within {timeout_s:g} s; check --url "
                             "and that the server has finished starting") from e
    except aiohttp.InvalidURL as e:
        raise PreflightError(f"--url {endpoint.base_url!r} is not a valid URL") from e
    except aiohttp.ClientError as e:
        raise PreflightError(f"{url}: {type(e).__name__}: {e}; check --url") from e
    except ValueError as e:
        raise PreflightError(f"{url} did not answer with JSON; is --url an "
                             "OpenAI-compatible server?") from e

    if status in (401, 403):
        raise PreflightError(f"the server rejected the API key (HTTP {status}); pass the right "
                             "key with --api-key or the OPENAI_API_KEY environment variable")
    if status == 404:
        raise PreflightError(f"{url} answered 404: --url must be the root of an "
                             "OpenAI-compatible server (e.g. http://host:8000)")
    if status != 200:
        raise PreflightError(f"{url} answered HTTP {status}: {body[:200]}")
    served = [m.get("id") for m in (payload or {}).get("data", []) if isinstance(m, dict)]
    if not served:
        raise PreflightError(f"{url} lists no models; is the server still loading?")
    if not endpoint.model:
        return str(served[0])
    if endpoint.model not in served:
        raise PreflightError(f"the server does not serve model {endpoint.model!r}; it serves "
                             f"{', '.join(map(str, served))}. Pass one of them with --model")
    return endpoint.model
