"""Cryptographic primitives the process builds once and every request may use: access-token
signing (``tokens``), password hashing (``passwords``) and the JWT signing secret (``jwt_secret``).

They know nothing of users: the rules (who may log in, what a token or key grants) are the
``auth`` domain's. They live below the domains because ``api.runtime.Runtime``, which every
domain reads, holds the configured codec and hasher, and ``api`` may not import a domain."""
