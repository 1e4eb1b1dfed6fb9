"""The API against a model: random sequences of define → load → read → query → evolve →
delete, with every answer compared to what a plain in-memory model says it must be.

Hypothesis picks the steps and the data (keys that collide, all three conflict modes, any
text PostgreSQL can store, 54-bit integers, nulls) and shrinks a failing sequence to the
shortest one that still fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from schemathesis.python import asgi

from tablehouse.app import create_app
from tablehouse.config import Settings
from tablehouse.rows.schemas import MAX_LIMIT
from tests.support import accounts

NAMES = ["alpha", "beta", "gamma"]
KEYS = st.integers(min_value=0, max_value=12)
VALUES = st.none() | st.integers(min_value=-(2**53), max_value=2**53)
TEXTS = st.none() | st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=24
)
MODES = st.sampled_from(["error", "skip", "update"])
STRING_FIELDS = ("label", "caption", "note")


@dataclass
class Dataset:
    """What the API must hold for one dataset: its non-key fields and rows by key."""

    fields: list[str] = field(default_factory=lambda: ["value", "label"])
    rows: dict[int, dict[str, Any]] = field(default_factory=dict)


def _type_of(name: str) -> str:
    return "string" if name in STRING_FIELDS else "integer"


class ApiModel(RuleBasedStateMachine):
    client: ClassVar[asgi.ASGIClient]
    headers: ClassVar[dict[str, str]]

    def __init__(self) -> None:
        super().__init__()
        self.datasets: dict[str, Dataset] = {}

    def teardown(self) -> None:
        for name in list(self.datasets):
            assert self.client.delete(f"/api/v1/schemas/{name}", headers=self.headers).ok

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.client.request(method, path, headers=self.headers, **kwargs)
        assert response.status_code < 500, response.text
        return response

    @rule(name=st.sampled_from(NAMES))
    def define(self, name: str) -> None:
        fields = [
            {"name": "id", "type": "integer", "primary_key": True},
            {"name": "value", "type": "integer"},
            {"name": "label", "type": "string"},
        ]
        response = self._call("POST", "/api/v1/schemas", json={"name": name, "fields": fields})
        if name in self.datasets:
            assert response.status_code == 409, response.text
        else:
            assert response.status_code == 201, response.text
            self.datasets[name] = Dataset()

    @rule(name=st.sampled_from(NAMES), mode=MODES, data=st.data())
    def load(self, name: str, mode: str, data: st.DataObject) -> None:
        dataset = self.datasets.get(name)
        columns = dataset.fields if dataset else ["value", "label"]
        row = st.fixed_dictionaries(
            {"id": KEYS, **{f: TEXTS if _type_of(f) == "string" else VALUES for f in columns}}
        )
        batch = data.draw(st.lists(row, min_size=1, max_size=6), label="rows")

        response = self._call(
            "POST", f"/api/v1/schemas/{name}/rows", params={"on_conflict": mode}, json=batch
        )

        if dataset is None:
            assert response.status_code == 404, response.text
            return
        keys = [r["id"] for r in batch]
        repeated = len(set(keys)) < len(keys) or any(k in dataset.rows for k in keys)
        if mode == "error" and repeated:
            assert response.status_code == 409, response.text
            return
        assert response.status_code == 201, response.text
        written: set[int] = set()
        skipped = 0
        for record in batch:
            key = record["id"]
            assert isinstance(key, int)
            if mode == "skip" and key in dataset.rows:
                skipped += 1
                continue
            # update: a key repeated in the body is written once, the last one winning.
            dataset.rows[key] = dict(record)
            written.add(key)
        inserted = len(written)
        report = response.json()
        assert (report["inserted"], report["skipped"]) == (inserted, skipped)

    @rule(name=st.sampled_from(NAMES), key=KEYS)
    def read_one(self, name: str, key: int) -> None:
        response = self._call("GET", f"/api/v1/schemas/{name}/rows/{key}")
        dataset = self.datasets.get(name)
        if dataset is None or key not in dataset.rows:
            assert response.status_code == 404, response.text
        else:
            assert response.status_code == 200, response.text
            assert response.json() == dataset.rows[key]

    @rule(name=st.sampled_from(NAMES))
    def read_all(self, name: str) -> None:
        response = self._call("GET", f"/api/v1/schemas/{name}/rows", params={"limit": MAX_LIMIT})
        dataset = self.datasets.get(name)
        if dataset is None:
            assert response.status_code == 404, response.text
            return
        assert response.status_code == 200, response.text
        assert response.json()["rows"] == [dataset.rows[k] for k in sorted(dataset.rows)]

    @rule(name=st.sampled_from(NAMES))
    def query(self, name: str) -> None:
        sql = f"SELECT count(*) AS n, sum(value) AS total FROM {name}"
        response = self._call("POST", "/api/v1/query", json={"sql": sql})
        dataset = self.datasets.get(name)
        if dataset is None:
            assert response.status_code == 404, response.text
            return
        assert response.status_code == 200, response.text
        values = [r["value"] for r in dataset.rows.values() if r["value"] is not None]
        assert response.json()["rows"] == [[len(dataset.rows), sum(values) if values else None]]

    @rule(name=st.sampled_from(NAMES), data=st.data())
    def evolve(self, name: str, data: st.DataObject) -> None:
        dataset = self.datasets.get(name)
        fields = dataset.fields if dataset else ["value", "label"]
        options: list[tuple[dict[str, Any], list[str]]] = []
        if "note" in fields:
            kept = [f for f in fields if f != "note"]
            options.append(({"op": "drop_field", "name": "note"}, kept))
        else:
            added = {"op": "add_field", "field": {"name": "note", "type": "string"}}
            options.append((added, [*fields, "note"]))
        old, new = ("label", "caption") if "label" in fields else ("caption", "label")
        renamed = [new if f == old else f for f in fields]
        options.append(({"op": "rename_field", "name": old, "new_name": new}, renamed))
        change, after = data.draw(st.sampled_from(options), label="change")

        response = self._call("PATCH", f"/api/v1/schemas/{name}", json={"changes": [change]})

        if dataset is None:
            assert response.status_code == 404, response.text
            return
        assert response.status_code == 200, response.text
        assert [f["name"] for f in response.json()["fields"]] == ["id", *after]
        source = {f: f for f in after}
        if change["op"] == "rename_field":
            source[change["new_name"]] = change["name"]
        for key, before in list(dataset.rows.items()):
            # An added field is null in every existing row.
            dataset.rows[key] = {"id": key} | {f: before.get(source[f]) for f in after}
        dataset.fields = after

    @rule(name=st.sampled_from(NAMES), key=KEYS)
    def delete_one(self, name: str, key: int) -> None:
        response = self._call("DELETE", f"/api/v1/schemas/{name}/rows/{key}")
        dataset = self.datasets.get(name)
        if dataset is None or key not in dataset.rows:
            assert response.status_code == 404, response.text
        else:
            assert response.status_code == 204, response.text
            del dataset.rows[key]

    @rule(name=st.sampled_from(NAMES))
    def drop(self, name: str) -> None:
        response = self._call("DELETE", f"/api/v1/schemas/{name}")
        if name not in self.datasets:
            assert response.status_code == 404, response.text
            return
        assert response.status_code == 204, response.text
        del self.datasets[name]
        # Use after free: nothing of it answers any more.
        assert self._call("GET", f"/api/v1/schemas/{name}").status_code == 404
        assert self._call("GET", f"/api/v1/schemas/{name}/rows/1").status_code == 404
        gone = self._call("POST", "/api/v1/query", json={"sql": f"SELECT * FROM {name}"})
        assert gone.status_code == 404, gone.text

    @invariant()
    def the_catalogue_lists_exactly_the_models_datasets(self) -> None:
        listed = self._call("GET", "/api/v1/schemas", params={"limit": 200}).json()
        assert sorted(item["name"] for item in listed["items"]) == sorted(self.datasets)


@pytest.fixture
def signed_in_client(settings: Settings) -> Any:
    app = create_app(settings)
    # Requests on one event loop thread, as a synchronous client (the state machine is sync).
    with asgi.get_client(cast("asgi.ASGIApp", app)) as client:
        registered = client.post(
            "/api/v1/auth/register",
            json={"email": "model@example.com", "password": accounts.PASSWORD},
        )
        assert registered.status_code == 201, registered.text
        login = client.post(
            "/api/v1/auth/login",
            json={"email": "model@example.com", "password": accounts.PASSWORD},
        )
        assert login.status_code == 200, login.text
        try:
            yield client, accounts.bearer(login.json()["access_token"])
        finally:
            asgi.shutdown_lifespans()


@pytest.mark.slow  # 25 runs of 30 steps each
def test_the_api_behaves_like_its_model(
    signed_in_client: tuple[asgi.ASGIClient, dict[str, str]],
) -> None:
    ApiModel.client, ApiModel.headers = signed_in_client
    run_state_machine_as_test(
        ApiModel,
        settings=settings(
            max_examples=25,
            stateful_step_count=30,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
