"""The one error-code table (wire/error_codes.py): every code in use is in it, and the nodes and
the client read the same status and flags from it."""

from __future__ import annotations

import ast
import importlib
import json
import pkgutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from client.errors import (
    AlreadyExists,
    BadRequest,
    ClientError,
    NoLeader,
    NotFound,
    NotLeader,
    OffsetOutOfRange,
    PayloadTooLarge,
    ServerError,
    ServerTimeout,
    Unavailable,
    client_class_for,
    error_from_response,
)
from node.http_errors import error_response
from wire.error_codes import ERROR_CODES, ErrorCode, error_code, http_status
from wire.errors import TabletLogError

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("wire", "storage", "replication", "node", "client")
FLAGS = ("retriable", "outcome_unknown", "refresh_metadata")
# Calls whose argument at the given position is an error code.
CODE_ARGUMENT = {
    "ApiError": 0,
    "error_response": 0,
    "Rejected": 0,
    "CommandRejected": 0,
    "_error": 1,  # node/replicate_api.py: a per-tablet fetch error
}


@dataclass(frozen=True)
class Use:
    """One place in the product source that names an error code."""

    code: str
    where: str


def _source_files() -> Iterator[Path]:
    for package in PRODUCT:
        yield from sorted((ROOT / package).rglob("*.py"))


def _strings(node: ast.expr, constants: dict[str, str]) -> list[str]:
    """The codes an expression can evaluate to: a string, a module constant (``NOT_LEADER``),
    either branch of ``a if c else b``, or the values and default of ``{...}.get(key, default)``.
    Anything else (``parsed.get("error")``) names no code of its own."""
    if isinstance(node, ast.Constant):
        return [node.value] if isinstance(node.value, str) else []
    if isinstance(node, ast.Name):
        return [constants[node.id]] if node.id in constants else []
    if isinstance(node, ast.IfExp):
        return _strings(node.body, constants) + _strings(node.orelse, constants)
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "get"
        and isinstance(node.func.value, ast.Dict)
    ):
        values = [*node.func.value.values, *node.args[1:]]
        return [code for value in values for code in _strings(value, constants)]
    return []


def _module_constants(trees: dict[Path, ast.Module]) -> dict[str, str]:
    """``NAME = "string"`` at module level, over every product module (for ``NOT_LEADER``)."""
    found: dict[str, str] = {}
    for tree in trees.values():
        for stmt in tree.body:
            if (
                isinstance(stmt, ast.Assign)
                and isinstance(stmt.value, ast.Constant)
                and isinstance(stmt.value.value, str)
            ):
                found.update(
                    {
                        t.id: stmt.value.value
                        for t in stmt.targets
                        if isinstance(t, ast.Name) and t.id.isupper()
                    }
                )
    return found


def _code_uses() -> list[Use]:
    """Every error code the product source names: ``code = ...`` (class attributes and
    locals), the code argument of the calls in CODE_ARGUMENT, and ``"error": ...`` in dicts."""
    trees = {path: ast.parse(path.read_text(), str(path)) for path in _source_files()}
    constants = _module_constants(trees)
    uses: list[Use] = []
    for path, tree in trees.items():
        rel = path.relative_to(ROOT)
        for node in ast.walk(tree):
            found: list[str] = []
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "code" for t in node.targets
            ):
                found = _strings(node.value, constants)
            elif isinstance(node, ast.Call):
                func = node.func
                name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
                index = CODE_ARGUMENT.get(name) if isinstance(name, str) else None
                if index is not None and len(node.args) > index:
                    found = _strings(node.args[index], constants)
            elif isinstance(node, ast.Dict):
                found = [
                    value.value
                    for key, value in zip(node.keys, node.values, strict=True)
                    if isinstance(key, ast.Constant)
                    and key.value == "error"
                    and isinstance(value, ast.Constant)
                    and isinstance(value.value, str)
                ]
            uses += [Use(code, f"{rel}:{getattr(node, 'lineno', 0)}") for code in found]
    return uses


USES = _code_uses()


def test_the_scan_finds_the_codes_in_use() -> None:
    """Guards the scan itself: it must see codes of every layer and kind."""
    codes = {use.code for use in USES}
    for code in ("corrupt_segment", "not_controller", "unauthorized", "fenced_leader_epoch"):
        assert code in codes
    for code in ("stale_term", "internal", "cluster_unreachable", "payload_too_large"):
        assert code in codes
    assert len(codes) > 40


@pytest.mark.parametrize("use", USES, ids=lambda use: f"{use.code}@{use.where}")
def test_every_code_in_use_is_in_the_table(use: Use) -> None:
    assert use.code in ERROR_CODES, f"{use.where} uses {use.code!r}: add it to wire/error_codes.py"


def test_every_code_in_the_table_is_in_use() -> None:
    """No dead entries: a code nothing raises does not belong in the table (yet)."""
    assert set(ERROR_CODES) - {use.code for use in USES} == set()


def _exception_classes() -> list[type[TabletLogError]]:
    for package in PRODUCT:
        module = importlib.import_module(package)
        for info in pkgutil.walk_packages(module.__path__, f"{package}."):
            if not info.name.endswith("__main__"):
                importlib.import_module(info.name)
    found: list[type[TabletLogError]] = []
    pending: list[type[TabletLogError]] = [TabletLogError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending += cls.__subclasses__()
    return [cls for cls in found if cls.__module__.split(".")[0] in PRODUCT]


CLASSES = _exception_classes()


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: f"{cls.__module__}.{cls.__qualname__}")
def test_every_error_class_has_the_flags_of_its_code(cls: type[TabletLogError]) -> None:
    entry = error_code(cls.code)
    assert {flag: getattr(cls, flag) for flag in FLAGS} == {
        flag: getattr(entry, flag) for flag in FLAGS
    }
    if not issubclass(cls, ClientError):  # a node may answer any of its errors over HTTP
        assert entry.status is not None, f"{cls.__qualname__}: {cls.code!r} needs a status"


def test_a_class_with_a_code_outside_the_table_fails_when_defined() -> None:
    with pytest.raises(TypeError, match=r"not in wire\.error_codes"):
        type("Invented", (TabletLogError,), {"code": "invented_here"})


def test_a_class_that_redeclares_a_flag_differently_fails_when_defined() -> None:
    with pytest.raises(TypeError, match=r"disagrees with wire\.error_codes"):
        type("Confused", (TabletLogError,), {"code": "timeout", "retriable": False})
    agreeing: type[TabletLogError] = type(
        "Agreeing", (TabletLogError,), {"code": "timeout", "retriable": True}
    )
    assert agreeing.outcome_unknown is True


SENT = [entry for entry in ERROR_CODES.values() if entry.status is not None]


@pytest.mark.parametrize("entry", SENT, ids=lambda entry: entry.code)
def test_node_answers_and_client_reads_the_same_code(entry: ErrorCode) -> None:
    """What a node sends for a code, and what the client makes of it, both follow the table."""
    assert entry.status is not None
    answer = error_response(entry.code, "why")
    assert answer.status == entry.status == http_status(entry.code)
    assert answer.text is not None
    body = json.loads(answer.text)
    assert body == {"error": entry.code, "message": "why"}
    error = error_from_response(answer.status, answer.text.encode())
    assert type(error) is client_class_for(entry.code, entry.status)
    assert {flag: getattr(error, flag) for flag in FLAGS} == {
        flag: getattr(entry, flag) for flag in FLAGS
    }, f"the client raises {type(error).__name__} for {entry.code!r}, with other flags"


def test_codes_not_sent_over_http_answer_500() -> None:
    assert http_status("fenced_leader_epoch") == 500
    assert http_status("never_heard_of") == 500


# The public contract (README and docs/openapi.yaml): these codes keep these statuses.
CONTRACT = [
    ("bad_request", 400, BadRequest),
    ("offset_out_of_range", 400, OffsetOutOfRange),
    ("unauthorized", 401, BadRequest),
    ("not_found", 404, NotFound),
    ("already_exists", 409, AlreadyExists),
    ("payload_too_large", 413, PayloadTooLarge),
    ("not_leader", 421, NotLeader),
    ("not_enough_replicas", 503, ServerError),
    ("no_leader", 503, NoLeader),
    ("not_controller", 503, NoLeader),
    ("timeout", 503, ServerTimeout),
    ("peer_unreachable", 503, Unavailable),
    ("internal", 500, ServerError),
]


@pytest.mark.parametrize(("code", "status", "cls"), CONTRACT)
def test_the_public_codes_keep_their_status(code: str, status: int, cls: type[ServerError]) -> None:
    assert error_code(code).status == status
    assert issubclass(client_class_for(code, status), cls)


def test_only_a_timeout_like_answer_leaves_a_write_unknown() -> None:
    unknown = {e.code for e in SENT if e.outcome_unknown}
    assert "timeout" in unknown
    assert unknown.isdisjoint({"not_enough_replicas", "no_leader", "not_leader", "bad_request"})
