"""The one table of who may call what: every route of the API with the least role it needs.

A route missing here is refused to everyone (403), and tests/integration/gateway/test_gateway_authz.py
fails when the OpenAPI document has a route this table does not list, so a new route cannot slip
through unprotected.  ``OPEN`` routes need no token: they hold no data of any app.

Routes that name an app also check the token's app scope (in the handler, which knows the app);
``admin`` routes act on the whole cluster, so they also need a token limited to no apps."""
from __future__ import annotations

from services.gateway.access import Role

OPEN = None
V, O, A = Role.viewer, Role.operator, Role.admin

RULES: dict[tuple[str, str], Role | None] = {
    # ops: readiness, metrics, the web UI's page (it fetches everything with the user's token)
    ("GET", "/healthz"): OPEN,
    ("GET", "/metrics"): OPEN,
    ("GET", "/"): OPEN,
    # apps
    ("GET", "/v1/apps"): V,
    ("GET", "/v1/apps/{app_id}"): V,
    ("GET", "/v1/apps/{app_id}/instances"): V,
    ("GET", "/v1/apps/{app_id}/versions"): V,
    ("GET", "/v1/apps/{app_id}/deployments"): V,
    ("POST", "/v1/apps"): O,
    ("POST", "/v1/apps/bulk"): O,
    ("PUT", "/v1/apps/{app_id}"): O,
    ("PATCH", "/v1/apps/{app_id}"): O,
    ("DELETE", "/v1/apps/{app_id}"): O,
    # deployment control
    ("POST", "/v1/apps/{app_id}/restart"): O,
    ("POST", "/v1/apps/{app_id}/rollback"): O,
    ("POST", "/v1/apps/{app_id}/deployment/pause"): O,
    ("POST", "/v1/apps/{app_id}/deployment/resume"): O,
    ("POST", "/v1/apps/{app_id}/deployment/cancel"): O,
    ("DELETE", "/v1/apps/{app_id}/delay"): O,
    ("POST", "/v1/apps/{app_id}/kill"): O,
    # observed state (filtered to the token's apps)
    ("GET", "/v1/instances"): V,
    ("GET", "/v1/instances/{instance_id}"): V,
    ("GET", "/v1/hosts"): V,
    ("GET", "/v1/hosts/{host_id}/usage"): V,
    ("GET", "/v1/discovery/prometheus"): V,
    ("GET", "/v1/events"): V,
    ("GET", "/v1/drift"): V,
    ("POST", "/v1/drift"): O,
    # the cluster
    ("POST", "/v1/hosts/{host_id}/drain"): A,
    ("DELETE", "/v1/hosts/{host_id}/drain"): A,
    ("POST", "/v1/hosts/{host_id}/cordon"): A,
    ("DELETE", "/v1/hosts/{host_id}/cordon"): A,
    ("GET", "/v1/dead-letters"): A,
    ("GET", "/v1/tokens"): A,
    ("POST", "/v1/tokens"): A,
    ("DELETE", "/v1/tokens/{name}"): A,
    ("GET", "/v1/audit"): A,
    # Marathon's /v2 API (docs/marathon.md): the same roles as the /v1 routes doing the same
    ("GET", "/v2/apps"): V,
    ("POST", "/v2/apps"): O,
    ("PUT", "/v2/apps"): O,
    ("GET", "/v2/apps/{marathon_id}"): V,
    ("PUT", "/v2/apps/{marathon_id}"): O,
    ("PATCH", "/v2/apps/{marathon_id}"): O,
    ("DELETE", "/v2/apps/{marathon_id}"): O,
    ("POST", "/v2/apps/{marathon_id}/restart"): O,
    ("GET", "/v2/apps/{marathon_id}/versions"): V,
    ("GET", "/v2/apps/{marathon_id}/versions/{version}"): V,
    ("GET", "/v2/apps/{marathon_id}/tasks"): V,
    ("DELETE", "/v2/apps/{marathon_id}/tasks"): O,
    ("DELETE", "/v2/apps/{marathon_id}/tasks/{task_id}"): O,
    ("GET", "/v2/tasks"): V,
    ("POST", "/v2/tasks/delete"): O,
    ("GET", "/v2/deployments"): V,
    ("DELETE", "/v2/deployments/{deployment_id}"): O,
    ("GET", "/v2/queue"): V,
    ("DELETE", "/v2/queue/{marathon_id}/delay"): O,
    ("GET", "/v2/info"): V,
    ("GET", "/v2/leader"): V,
    ("GET", "/v2/events"): V,
    ("GET", "/ping"): OPEN,
}

MISSING = object()


def rule(method: str, path: str) -> Role | None | object:
    """The least role for a route template; ``OPEN`` (None) for no token; ``MISSING`` if unlisted.
    HEAD is answered like GET (Starlette serves it from the GET route)."""
    return RULES.get(("GET" if method == "HEAD" else method, path), MISSING)
