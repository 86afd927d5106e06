"""The import graph: core imports no role, roles import only core, and only the store imports redis."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROLES = ("api", "dispatcher", "worker", "autoscaler")
PRODUCT = ("core", *ROLES, "launcher")
# The one door to Redis, and the embedded server's launcher (it waits for the server to answer).
MAY_IMPORT_REDIS = ("core/store/", "core/embedded.py")


def imports() -> dict[str, set[str]]:
    """``path -> top-level-qualified module names it imports``, for every product module."""
    out = {}
    for pkg in PRODUCT:
        for path in (ROOT / pkg).rglob("*.py"):
            names = set()
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names.update(a.name for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names.add(node.module)
            out[path.relative_to(ROOT).as_posix()] = names
    return out


def top(name: str) -> str:
    return name.split(".")[0]


def test_core_imports_no_role_and_no_launcher() -> None:
    upward = {p: sorted(n for n in names if top(n) in (*ROLES, "launcher", "bench"))
              for p, names in imports().items() if p.startswith("core/")}
    assert {p: n for p, n in upward.items() if n} == {}


def test_a_role_imports_only_core_and_itself() -> None:
    crossing = {}
    for p, names in imports().items():
        role = p.split("/")[0]
        if role in ROLES and (other := sorted(n for n in names if top(n) in PRODUCT and top(n) not in ("core", role))):
            crossing[p] = other
    assert crossing == {}


def test_only_the_store_and_the_embedded_server_import_redis() -> None:
    users = sorted(p for p, names in imports().items() if any(top(n) == "redis" for n in names))
    assert [p for p in users if not p.startswith(MAY_IMPORT_REDIS)] == []
    assert users, "the store must still be found importing redis, or this test checks nothing"


def test_roles_and_the_launcher_see_the_store_as_one_package() -> None:
    # Through ``core.store``'s role interfaces (and its event stream), never a record module: the
    # registry's Redis side included, so a role cannot reach around its narrow interface.
    deep = {p: sorted(n for n in names if n.startswith("core.store.") and n != "core.store.events")
            for p, names in imports().items() if not p.startswith("core/")}
    assert {p: n for p, n in deep.items() if n} == {}


def test_record_definitions_do_no_io() -> None:
    graph = imports()
    for record in ("core/keys.py", "core/jobs.py", "core/fleet.py", "core/registry.py"):
        io = sorted(n for n in graph[record] if top(n) == "redis" or n.startswith("core.store"))
        assert io == [], record


def test_the_scan_sees_every_layer() -> None:
    # A module this test file relies on that moved or vanished would make the checks above vacuous.
    graph = imports()
    for module in ("core/store/registry.py", "core/registry.py", "launcher/models.py", "launcher/up.py",
                   "worker/model_source.py", "worker/per_gpu.py", "autoscaler/health.py", "api/routes/models.py"):
        assert module in graph, module
    assert "core.store" in graph["worker/model_source.py"] and "core.store" in graph["autoscaler/observe.py"]
