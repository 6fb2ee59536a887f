"""The task record's hand-written SQL lives in one module (tasks_app.records), read from the source.

A module writes SQL on TaskRecord's or TaskCount's table when it names the table (its db_table,
or the table's name in a string) or hands the ORM raw SQL for them. Only the storage module, the
triggers it sits beside (tasks_app.record_triggers) and the migrations that install them may.
"""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("claw_ai", "tasks_app", "conversations", "monitoring")
MODELS = {"TaskRecord", "TaskCount"}
# The tables' names as SQL names them (not inside an admin URL name such as tasks_app_taskrecord_change).
TABLE = re.compile(r"(?<![\w:])tasks_app_task(record|count)(?!\w)")
STORAGE = {"tasks_app/records.py", "tasks_app/record_triggers.py"}
# Reports, not storage: the admin dashboard's time-bucketed figures join the records to the chat
# messages, which tasks_app may not import (tests/foundation/test_import_layers.py).
READ_ONLY_REPORTS = {"monitoring/dashboard.py"}


def _model_name(node: ast.AST) -> str | None:
    return node.id if isinstance(node, ast.Name) and node.id in MODELS else None


def hand_written_sql(source: str) -> list[str]:
    """Where `source` names a task record table or gives the ORM raw SQL for one."""
    found = []
    for node in ast.walk(ast.parse(source)):
        where = f"line {getattr(node, 'lineno', '?')}"
        # TaskRecord._meta.db_table
        if (
            isinstance(node, ast.Attribute)
            and node.attr == "db_table"
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "_meta"
            and _model_name(node.value.value)
        ):
            found.append(f"{where}: {node.value.value.id}._meta.db_table")
        # "... tasks_app_taskrecord ..."
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if TABLE.search(node.value):
                found.append(f"{where}: the table's name in a string")
        # TaskRecord.objects.raw(...) / .extra(...)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("raw", "extra"):
            owner = node.func.value
            if isinstance(owner, ast.Attribute) and owner.attr == "objects" and _model_name(owner.value):
                found.append(f"{where}: {owner.value.id}.objects.{node.func.attr}()")
    return found


def runtime_modules():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" not in path.parts:
                yield path.relative_to(ROOT).as_posix(), path


def test_the_check_sees_each_way_of_writing_sql():
    source = (
        "x = TaskRecord._meta.db_table\n"
        "y = 'UPDATE tasks_app_taskcount SET count = 0'\n"
        "z = TaskRecord.objects.raw('SELECT 1')\n"
        "ok = Message._meta.db_table\n"
        "url = reverse('admin:tasks_app_taskrecord_change')\n"
    )
    assert len(hand_written_sql(source)) == 3


def test_the_storage_module_is_where_the_sql_is():
    assert hand_written_sql((ROOT / "tasks_app/records.py").read_text())


def test_no_hand_written_sql_on_task_records_outside_their_storage_module():
    offending = {
        name: found
        for name, path in runtime_modules()
        if name not in STORAGE | READ_ONLY_REPORTS and (found := hand_written_sql(path.read_text()))
    }
    assert not offending, offending
