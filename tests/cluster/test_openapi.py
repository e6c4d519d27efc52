"""docs/openapi.yaml is a valid OpenAPI document, and what the server answers matches it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate

from testkit.cluster import Cluster
from testkit.http import HttpError

SPEC_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
SPEC: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text())


def _deref(node: Any) -> Any:
    """The schema with every local ``$ref`` inlined (the spec has no cycles)."""
    if isinstance(node, dict):
        if "$ref" in node:
            target: Any = SPEC
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            return _deref(target)
        return {k: _deref(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_deref(v) for v in node]
    return node


def response_schema(path: str, method: str, status: int) -> dict[str, Any]:
    responses = _deref(SPEC["paths"][path][method]["responses"])
    response = responses[str(status)]
    schema: dict[str, Any] = response["content"]["application/json"]["schema"]
    return schema


def check(path: str, method: str, status: int, body: Any) -> None:
    OAS30Validator(response_schema(path, method, status)).validate(body)


def test_spec_is_valid_openapi() -> None:
    validate(SPEC)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster.running(tmp_path_factory.mktemp("openapi"), 3) as c:
        yield c


@pytest.mark.cluster
def test_answers_match_the_spec(cluster: Cluster) -> None:
    check("/readyz", "get", 200, cluster.api("n1", "GET", "/readyz"))
    check("/v1/cluster", "get", 200, cluster.api("n1", "GET", "/v1/cluster"))
    created = cluster.api("n2", "POST", "/v1/logs", {"name": "spec", "tablets": 2})
    check("/v1/logs", "post", 201, created)
    check("/v1/logs", "get", 200, cluster.api("n3", "GET", "/v1/logs"))
    check("/v1/logs/{log}", "get", 200, cluster.api("n1", "GET", "/v1/logs/spec"))
    produced = cluster.api(
        "n1",
        "POST",
        "/v1/logs/spec/records",
        {"records": [{"key": "k", "value": "v"}, {"value_b64": "/w==", "tablet": 1}]},
    )
    check("/v1/logs/{log}/records", "post", 200, produced)
    for tablet in (0, 1):
        read = cluster.api("n2", "GET", f"/v1/logs/spec/tablets/{tablet}/records?offset=0")
        check("/v1/logs/{log}/tablets/{tablet}/records", "get", 200, read)
    check(
        "/v1/logs/{log}/tablets/{tablet}/offsets",
        "get",
        200,
        cluster.api("n1", "GET", "/v1/logs/spec/tablets/0/offsets?timestamp=0"),
    )
    check(
        "/v1/logs/{log}/tablets/{tablet}/replicas/{node}",
        "get",
        200,
        cluster.api("n1", "GET", "/v1/logs/spec/tablets/0/replicas/n3"),
    )
    check("/v1/status", "get", 200, cluster.api("n3", "GET", "/v1/status"))
    cluster.api(
        "n1",
        "POST",
        "/v1/groups/g1/offsets",
        {"offsets": [{"log": "spec", "tablet": 0, "offset": 1}]},
    )
    check(
        "/v1/groups/{group}/offsets", "get", 200, cluster.api("n2", "GET", "/v1/groups/g1/offsets")
    )


@pytest.mark.cluster
@pytest.mark.parametrize(
    ("method", "path", "spec_path", "body", "status"),
    [
        ("post", "/v1/logs", "/v1/logs", {"name": "bad name"}, 400),
        ("get", "/v1/logs/none", "/v1/logs/{log}", None, 404),
        (
            "post",
            "/v1/logs/none/records",
            "/v1/logs/{log}/records",
            {"records": [{"value": "v"}]},
            404,
        ),
        (
            "get",
            "/v1/logs/spec/tablets/0/records?offset=99999",
            "/v1/logs/{log}/tablets/{tablet}/records",
            None,
            400,
        ),
    ],
)
def test_errors_match_the_spec(
    cluster: Cluster, method: str, path: str, spec_path: str, body: Any, status: int
) -> None:
    if "spec" in path and "spec" not in cluster.api("n1", "GET", "/v1/logs")["logs"]:
        cluster.create_log("spec", tablets=2)
    with pytest.raises(HttpError) as info:
        cluster.api("n1", method.upper(), path, body)
    assert info.value.status == status
    check(spec_path, method, status, info.value.body)
