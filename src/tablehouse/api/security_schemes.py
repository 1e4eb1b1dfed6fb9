"""The OpenAPI document's security schemes: HTTP bearer beside the OAuth2 password flow.

Every protected operation reads one ``Authorization: Bearer`` value, an access token or an
API key alike. FastAPI declares it as the OAuth2 password flow only, whose Authorize form
asks for a password: a client or a person holding an API key had nowhere to put it. This
declares the same header as HTTP bearer too, as an alternative on every such operation,
in the document only: requests are read exactly as before (no second dependency to run).
"""

from __future__ import annotations

from typing import Any

BEARER_SCHEME = "HTTPBearer"
BEARER = {
    "type": "http",
    "scheme": "bearer",
    "description": (
        "An API key (`th_...`) or an access token from /auth/login, sent as "
        "`Authorization: Bearer <value>`. In /docs, paste the value alone."
    ),
}


def offer_bearer_scheme(document: dict[str, Any]) -> None:
    """Add ``HTTPBearer`` to ``document`` and, to every operation that accepts an OAuth2
    scheme, ``HTTPBearer`` as an alternative (security requirements are ORed)."""
    schemes: dict[str, Any] = document.setdefault("components", {}).setdefault(
        "securitySchemes", {}
    )
    oauth2 = {name for name, scheme in schemes.items() if scheme.get("type") == "oauth2"}
    if not oauth2:
        return
    schemes[BEARER_SCHEME] = dict(BEARER)
    alternative: dict[str, list[str]] = {BEARER_SCHEME: []}
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            # A path item also holds its summary and shared parameters, which are no operation.
            if not isinstance(operation, dict):
                continue
            requirements = operation.get("security")
            if (
                requirements
                and any(oauth2 & requirement.keys() for requirement in requirements)
                and alternative not in requirements
            ):
                requirements.append({BEARER_SCHEME: []})
