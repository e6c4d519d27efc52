"""Authentication of the internal API (replica fetch, controller calls) by the cluster secret.

Nodes send a token derived from the secret rather than the secret itself, so a captured request
does not reveal the secret (it is reusable within the cluster, like any bearer token: run the
internal network on trusted links). Thread-safe; pure.
"""

from __future__ import annotations

import hashlib
import hmac

INTERNAL_TOKEN_HEADER = "X-Tabletlog-Token"  # noqa: S105 - a header name, not a secret


def internal_token(secret: str) -> str:
    """The bearer token nodes present on internal calls."""
    return hmac.new(secret.encode(), b"tabletlog internal api v1", hashlib.sha256).hexdigest()


def token_is_valid(presented: str | None, secret: str) -> bool:
    """Constant-time check of a presented token against the cluster secret."""
    if not presented:
        return False
    return hmac.compare_digest(presented.encode(), internal_token(secret).encode())
