"""Prefix- and load-aware routing of requests to engine replicas.

`RouterCore` makes the choice (pure, no Ray); `PrefixAwareRouter`
(`serve.routing.prefix_aware_router`) is the Ray Serve `RequestRouter` adapter around it;
`request_router_config(RouterKnobs(...))` is the deployment option that installs it.
"""

from serve.routing.knobs import ROUTER_CLASS, RouterKnobs, request_router_config
from serve.routing.router_core import Choice, RoutedRequest, RouterCore

__all__ = ["ROUTER_CLASS", "Choice", "RoutedRequest", "RouterCore", "RouterKnobs",
           "request_router_config"]
