"""Each Lua script agrees with its Python call, and touches only the hash fields Python defines.

The keys and arguments of a script are declared once, as the fields of two dataclasses in
``core/store/scripts.py``; the Lua bodies use those names. These tests read the Lua source and
fail when a body indexes KEYS or ARGV itself, leaves a declared name unused, uses a name that
nothing declares, or reads or writes a hash field that ``JobField``, ``WorkerField`` or
``RegistryField`` lacks.
"""

from __future__ import annotations

import dataclasses
import re

import pytest

from core.fleet import CounterField, WorkerField
from core.jobs import JobField
from core.keys import PRIORITIES
from core.registry import RegistryField
from core.store.scripts import ALL, Script

KEYWORDS = frozenset(re.findall(r"\w+", """
    and break do else elseif end false for function goto if in local nil not or repeat return then true until while
"""))
BUILTINS = frozenset(re.findall(r"\w+", """
    redis table tonumber tostring ipairs pairs unpack string math cjson type next select error assert pcall bit
    struct cmsgpack
"""))
LIB_FUNCTIONS = frozenset({"end_job"})

HASH_FIELDS = {"job": frozenset(JobField), "jk": frozenset(JobField), "worker_info": frozenset(WorkerField),
               "entry": frozenset(RegistryField), "counters": frozenset(CounterField)}
HASH_COMMANDS = {"HSET": "pairs", "HMGET": "all", "HDEL": "all", "HGET": "one", "HINCRBY": "one",
                 "HINCRBYFLOAT": "one", "HSETNX": "one", "HEXISTS": "one"}

_STRING = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_COMMENT = re.compile(r"--[^\n]*")


def code_only(lua: str) -> str:
    """The source with comments removed and every string literal replaced by ``''``."""
    out, i = [], 0
    while i < len(lua):
        if lua.startswith("--", i):
            end = lua.find("\n", i)
            i = len(lua) if end < 0 else end
        elif lua[i] in "'\"":
            m = _STRING.match(lua, i)
            assert m, f"unterminated string at {i}"
            out.append("''")
            i = m.end()
        else:
            out.append(lua[i])
            i += 1
    return "".join(out)


def declared_locals(code: str) -> set[str]:
    names: set[str] = set()
    for m in re.finditer(r"\blocal\s+function\s+(\w+)\s*\(([^)]*)\)", code):
        names.add(m.group(1))
        names.update(p.strip() for p in m.group(2).split(",") if p.strip() not in ("", "..."))
    for m in re.finditer(r"\blocal\s+(?!function\b)([\w\s,]+?)\s*(?==|\n)", code):
        names.update(n.strip() for n in m.group(1).split(","))
    for m in re.finditer(r"\bfor\s+([\w\s,]+?)\s*(?:=|\bin\b)", code):
        names.update(n.strip() for n in m.group(1).split(","))
    return names


def used_names(code: str) -> set[str]:
    """Identifiers read: not a field after '.' or ':', not an assignment target or table key."""
    used = set()
    for m in re.finditer(r"[A-Za-z_]\w*", code):
        before = code[: m.start()].rstrip()
        after = code[m.end():].lstrip()
        if (before.endswith(".") and not before.endswith("..")) or before.endswith(":"):
            continue
        if after.startswith("=") and not after.startswith("=="):
            continue
        used.add(m.group())
    return used


def calls(lua: str, name: str) -> list[list[str]]:
    """The top-level arguments of every call of ``name(`` (``redis.call`` included), as source text."""
    found = []
    for m in re.finditer(re.escape(name) + r"\(", lua):
        depth, start, args, i = 1, m.end(), [], m.end()
        while depth:
            ch = lua[i]
            if ch in "'\"":
                i = _STRING.match(lua, i).end()  # type: ignore[union-attr]
                continue
            if ch in "({":
                depth += 1
            elif ch in ")}":
                depth -= 1
            elif ch == "," and depth == 1:
                args.append(lua[start:i].strip())
                start = i + 1
            i += 1
        args.append(lua[start: i - 1].strip())
        found.append(args)
    return found


def problems(script: Script[object, object], body: str | None = None) -> list[str]:
    body = script.body if body is None else body
    code = code_only(body)
    declared = set(script.key_names) | set(script.arg_names)
    out = []
    if "KEYS[" in code or "ARGV[" in code:
        out.append("indexes KEYS or ARGV itself; use the declared names")
    if bad := sorted(declared & (KEYWORDS | BUILTINS | LIB_FUNCTIONS)):
        out.append(f"declares names that hide Lua's: {bad}")
    used = used_names(code)
    if unused := sorted(declared - used):
        out.append(f"declares but never uses {unused}")
    known = declared | declared_locals(code) | KEYWORDS | BUILTINS | LIB_FUNCTIONS
    if unknown := sorted(used - known):
        out.append(f"uses names nothing declares: {unknown}")
    return out


def field_problems(lua: str) -> list[str]:
    out = []
    touched: list[tuple[str, str]] = []
    for args in calls(lua, "redis.call"):
        command = args[0].strip("'\"").upper()
        if command not in HASH_COMMANDS:
            continue
        shape = HASH_COMMANDS[command]
        fields = args[2::2] if shape == "pairs" else args[2:] if shape == "all" else args[2:3]
        touched += [(args[1], f) for f in fields]
    for args in calls(lua, "end_job"):  # its own definition has only names, which are skipped
        touched += [(args[0], f) for f in args[7::2]]
    for key, f in touched:
        if key not in HASH_FIELDS:
            out.append(f"a hash command on {key!r}: which record is it? (add it to HASH_FIELDS)")
        elif f.startswith("'") and f.strip("'") not in HASH_FIELDS[key]:
            out.append(f"field {f} of {key} is not defined in Python")
    return out


@pytest.mark.parametrize("script", ALL, ids=lambda s: s.name)
def test_the_body_uses_exactly_the_declared_keys_and_arguments(script: Script[object, object]) -> None:
    assert problems(script) == []


@pytest.mark.parametrize("script", ALL, ids=lambda s: s.name)
def test_every_hash_field_the_script_touches_is_defined_in_python(script: Script[object, object]) -> None:
    assert field_problems(script.source) == []


def test_a_disagreement_is_caught() -> None:
    dispatch = next(s for s in ALL if s.name == "dispatch")
    assert problems(dispatch, dispatch.body.replace("worker_alive", "KEYS[7]"))
    assert problems(dispatch, dispatch.body.replace("worker_alive", "worker_alvie"))
    assert any("never uses" in p for p in problems(dispatch, dispatch.body.replace("bound", "2")))
    assert field_problems(dispatch.source.replace("'dispatched_at_s'", "'dispatched_at'"))
    assert field_problems("redis.call('HGET', worker_info, 'ewma')")


def test_the_prelude_binds_every_position_in_declaration_order() -> None:
    for script in ALL:
        lines = script.prelude().splitlines()[1:]
        keys = [f"local {n} = KEYS[{i}]" for i, n in enumerate(script.key_names, 1)]
        assert lines[: len(keys)] == keys
        assert len(lines) == len(script.key_names) + len(script.arg_names)


def test_model_queue_slots_are_named_by_priority_in_drain_order() -> None:
    for script in ALL:
        names = [n for n in script.key_names if n in PRIORITIES]
        assert names in ([], list(PRIORITIES)), script.name


def test_constants_cannot_be_passed_by_a_call() -> None:
    dispatch = next(s for s in ALL if s.name == "dispatch")
    consts = [f.name for f in dataclasses.fields(dispatch.args_type) if not f.init]  # type: ignore[arg-type]
    assert {"queued", "dispatched", "expired", "expired_status", "expired_error", "ready"} <= set(consts)
    with pytest.raises(TypeError):
        dispatch.args_type(worker_id="w", bound=1, now=0.0, expected="", job_prefix="p", retention_s=1,
                           done_channel="c", queued="not-a-state")
