"""Text a user sends that the database stores: PostgreSQL cannot store the NUL character.

Refused on both backends alike, so a body that works on SQLite works on PostgreSQL too.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

# JSON Schema (ECMA-262) spelling of "no NUL anywhere", for the OpenAPI document.
WITHOUT_NUL_PATTERN = "^[^\\u0000]*$"


def without_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain the NUL character (\\u0000)")
    return value


class _StatedWithoutNul:
    """Adds the rule to the JSON schema, keeping the lengths and the rest of it."""

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema: dict[str, Any] = handler(core_schema)
        schema["pattern"] = WITHOUT_NUL_PATTERN
        return schema


Text = Annotated[str, AfterValidator(without_nul), _StatedWithoutNul()]
