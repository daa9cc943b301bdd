"""--ui-auth: HTTP Basic credentials on every inspector route but the open ones."""

from __future__ import annotations

from flask import Response, request

from ...config import flag
from ...model.redact import basic_credentials_match
from ..services import services
from .common import api_error, bp

# Routes that stay open under --ui-auth. Liveness and health answer container and
# Kubernetes probes, which carry no credentials; the static assets and the
# pygments stylesheet hold no request data and style the echo's HTML page,
# which is served outside the inspector and so without credentials.
# The bare prefix (/_) only redirects to the prefix (/_/): answering it with a
# 401 instead would make a browser scope the credentials to "/", and send the
# inspector's password with every echo request from then on.
OPEN_ENDPOINTS = frozenset({"inspector.livez", "inspector.healthz", "inspector.css", "static", "bare_prefix"})


@bp.before_app_request
def require_auth() -> Response | None:
    # An app-wide hook, not a blueprint one: the Flask app serves only the
    # inspector prefix, and unknown paths under it must not answer 404 (which
    # would tell a stranger what exists) before the credentials are checked.
    expected = services().options.ui_auth
    if not expected or request.endpoint in OPEN_ENDPOINTS:
        return None
    if basic_credentials_match(request.headers.get("Authorization", ""), expected):
        return None
    response = api_error(401, f"authentication required: this inspector needs the user and password of {flag('ui_auth')}")
    response.headers["WWW-Authenticate"] = 'Basic realm="Echo inspector", charset="UTF-8"'
    return response
