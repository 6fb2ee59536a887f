"""Dependencies point one way (STYLE.md): read from the source, every import, lazy ones too.

- The chat domain uses the task system, never the reverse: `claw_ai` and `tasks_app` import
  nothing of `conversations`, except the task modules that run the chat work (tasks_app/tasks/)
  and the root URLconf, where a project wires its apps together.
- Worker code never imports the API layer (serializers, views).
- No module imports, directly or through others, a module that imports it back.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("claw_ai", "tasks_app", "conversations", "monitoring")
# Modules a worker runs (tasks and what only they call): no API layer below them.
WORKER_MODULES = (
    "tasks_app.tasks.",
    "tasks_app.notifications",
    "tasks_app.result_backend",
    "tasks_app.recording",
    "tasks_app.publishing",
    "tasks_app.records",
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module: str) -> set[str]:
    """Every project module `path` imports, at any depth of the file (lazy imports included)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(name for name in names if name.split(".")[0] in PACKAGES)
    return found


def _graph() -> dict[str, set[str]]:
    files = {
        _module_name(path): path
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if "migrations" not in path.parts
    }
    # "from x import y" names a module x.y when there is one, else an attribute of x.
    return {name: {i for i in _imports(path, name) if i in files and i != name} for name, path in files.items()}


GRAPH = _graph()


def test_the_graph_was_read():
    assert "tasks_app.services" in GRAPH["conversations.services"]
    assert len(GRAPH) > 50


@pytest.mark.parametrize("lower", ["claw_ai", "tasks_app"])
def test_the_task_system_never_imports_the_chat_domain(lower):
    allowed = ("tasks_app.tasks.", "claw_ai.urls")
    offending = {
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        if module.split(".")[0] == lower and not module.startswith(allowed)
        for target in targets
        if target.startswith("conversations")
    }
    assert not offending, sorted(offending)


def test_worker_code_never_imports_the_api_layer():
    offending = {
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        if module.startswith(WORKER_MODULES)
        for target in targets
        if ".api." in f"{target}." and not target.startswith("claw_ai.api")
    }
    assert not offending, sorted(offending)


def test_no_module_imports_itself_back():
    cycles = []

    def visit(module: str, path: list[str], on_path: set[str], done: set[str]) -> None:
        on_path.add(module)
        path.append(module)
        for target in sorted(GRAPH[module]):
            if target in on_path:
                cycles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in done:
                visit(target, path, on_path, done)
        path.pop()
        on_path.discard(module)
        done.add(module)

    done: set[str] = set()
    for module in sorted(GRAPH):
        if module not in done:
            visit(module, [], set(), done)
    assert not cycles, "\n".join(cycles)
