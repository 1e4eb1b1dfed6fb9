"""Request and response bodies for datasets."""

from __future__ import annotations

import math
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema, model_validator

from tablehouse.core.text import Text
from tablehouse.datasets.names import check_identifier, identifier_json_schema

# Checked by check_identifier (for its messages); the document states the same rule.
Identifier = Annotated[
    str, AfterValidator(check_identifier), WithJsonSchema(identifier_json_schema())
]
FieldType = Literal["string", "integer", "float", "boolean", "datetime", "date", "json", "uuid"]
DEFAULT_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "float": (int, float),
    "boolean": (bool,),
}
JSON_TYPES = {"string": "string", "integer": "integer", "float": "number", "boolean": "boolean"}
MAX_STRING_LENGTH = 10_485_760


class FieldSpec(BaseModel):
    # The document states what _consistent and _check_default check, but for a string
    # default longer than max_length (JSON Schema cannot compare two values).
    model_config = ConfigDict(extra="forbid", json_schema_extra=lambda s: _field_rules(s))

    name: Identifier
    type: FieldType
    description: Annotated[Text | None, Field(max_length=1000)] = None
    nullable: bool | None = Field(
        default=None, description="Default: false for primary-key fields, true for others"
    )
    primary_key: bool = False
    unique: bool = False
    default: Text | int | float | bool | None = Field(
        default=None, description="For string, integer, float and boolean fields"
    )
    max_length: Annotated[int | None, Field(ge=1, le=MAX_STRING_LENGTH)] = None

    @model_validator(mode="after")
    def _consistent(self) -> FieldSpec:
        if self.primary_key and self.nullable:
            raise ValueError("a primary-key field cannot be nullable")
        if self.nullable is None:
            self.nullable = not self.primary_key
        if self.max_length is not None and self.type != "string":
            raise ValueError("max_length applies to string fields only")
        if self.default is not None:
            _check_default(self)
        return self

    @property
    def is_nullable(self) -> bool:
        return bool(self.nullable)


def _field_rules(schema: dict[str, Any]) -> None:
    def when(condition: dict[str, Any], then: dict[str, Any]) -> dict[str, Any]:
        return {"if": {"properties": condition}, "then": {"properties": then}}

    no_default = {"default": {"type": "null"}}
    schema["allOf"] = [
        {
            "if": {"properties": {"primary_key": {"const": True}}, "required": ["primary_key"]},
            "then": {"properties": {"nullable": {"not": {"const": True}}, **no_default}},
        },
        when({"type": {"not": {"const": "string"}}}, {"max_length": {"type": "null"}}),
        *(
            when({"type": {"const": name}}, {"default": {"type": [JSON_TYPES[name], "null"]}})
            for name in DEFAULT_TYPES
        ),
        when({"type": {"not": {"enum": list(DEFAULT_TYPES)}}}, no_default),
    ]


def _not_a_key(schema: dict[str, Any]) -> None:
    field = schema["properties"]["field"]
    not_key = {"properties": {"primary_key": {"not": {"const": True}}}}
    schema["properties"]["field"] = {"allOf": [field, not_key]}


def _check_default(spec: FieldSpec) -> None:
    allowed = DEFAULT_TYPES.get(spec.type)
    if allowed is None:
        raise ValueError("defaults are supported for string, integer, float and boolean fields")
    value = spec.default
    # bool is an int in Python; keep the types apart.
    if not isinstance(value, allowed) or (isinstance(value, bool) and spec.type != "boolean"):
        raise ValueError(f"default {value!r} is not a {spec.type}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("default must be a finite number")
    if spec.max_length is not None and isinstance(value, str) and len(value) > spec.max_length:
        raise ValueError("default is longer than max_length")
    if spec.primary_key:
        raise ValueError("a primary-key field cannot have a default")


class SchemaCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Identifier
    description: Annotated[Text | None, Field(max_length=2000)] = None
    fields: Annotated[
        list[FieldSpec],
        Field(
            min_length=1,
            description="Unique names; at least one field is the primary key",
            # Checked by the service (no_primary_key); stated here too.
            json_schema_extra={
                "contains": {
                    "properties": {"primary_key": {"const": True}},
                    "required": ["primary_key"],
                }
            },
        ),
    ]


class AddField(BaseModel):
    # The service refuses a new primary-key field (the table exists); the document says so.
    model_config = ConfigDict(extra="forbid", json_schema_extra=lambda s: _not_a_key(s))

    op: Literal["add_field"]
    field: FieldSpec


class DropField(BaseModel):
    model_config = ConfigDict(extra="forbid")

    op: Literal["drop_field"]
    name: str


class RenameField(BaseModel):
    model_config = ConfigDict(extra="forbid")

    op: Literal["rename_field"]
    name: str
    new_name: Identifier


Change = Annotated[AddField | DropField | RenameField, Field(discriminator="op")]


class SchemaUpdate(BaseModel):
    # The document says what _not_empty checks: a description, or at least one change.
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "anyOf": [
                {"required": ["description"], "properties": {"description": {"type": "string"}}},
                {"required": ["changes"], "properties": {"changes": {"minItems": 1}}},
            ]
        },
    )

    description: Annotated[Text | None, Field(max_length=2000)] = None
    changes: Annotated[list[Change], Field(max_length=50)] = []

    @model_validator(mode="after")
    def _not_empty(self) -> SchemaUpdate:
        if self.description is None and not self.changes:
            raise ValueError("nothing to change: give a description or changes")
        return self


class SchemaRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    description: str | None
    version: int
    fields: list[FieldSpec]
    row_count: int = Field(0, description="Rows in the dataset's table now")
    created_at: datetime
    updated_at: datetime


class SchemaVersionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    number: int
    change: dict[str, Any]
    fields: list[FieldSpec]
    ddl: str
    author_id: uuid.UUID | None
    created_at: datetime


class Problem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationReport(BaseModel):
    valid: bool
    problems: list[Problem] = []
    ddl: dict[str, str] = Field(
        default_factory=dict, description="The statements that would run, per backend"
    )
