"""Password hashing with argon2id, off the event loop."""

from __future__ import annotations

import asyncio

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from tablehouse.config import Settings


class Passwords:
    def __init__(self, settings: Settings) -> None:
        self._hash = PasswordHash(
            (
                Argon2Hasher(
                    time_cost=settings.password_hash_time_cost,
                    memory_cost=settings.password_hash_memory_kib,
                    parallelism=settings.password_hash_parallelism,
                ),
            )
        )
        # Verified against when the email is unknown, so that answer takes as long as a
        # wrong password and does not reveal which accounts exist.
        self._decoy = self._hash.hash("tablehouse decoy password")

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hash.hash, password)

    async def verify(self, password: str, password_hash: str) -> tuple[bool, str | None]:
        """Whether it matches, and a new hash when the stored one uses old parameters."""
        return await asyncio.to_thread(self._hash.verify_and_update, password, password_hash)

    async def waste_time(self, password: str) -> None:
        await asyncio.to_thread(self._hash.verify, password, self._decoy)
