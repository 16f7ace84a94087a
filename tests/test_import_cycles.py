"""No import circles among hpcwizard's modules.

The graph is read from the source (each module's AST), not by importing: an
import the interpreter has not reached yet cannot hide an edge. Imports under
``if TYPE_CHECKING:`` are for the type checker only and never run.

- What runs when a module is imported (its top-level imports, those in class
  bodies and under ``if``/``try``/``with`` too) has no circle: one makes the
  import order matter, and one more name moved makes an ImportError. None
  exists; :data:`ALLOWED_CIRCLES` would name one that had to stay (it is empty).
- Imports deferred into functions (the light start moves many there) can close
  a circle too: it works, but two modules in one cannot be understood, tested
  or moved one without the other. Issue 16 broke every one (wizard <-> step
  screens, quota <-> space, checks.preflight <-> prepare.check, project.files
  <-> remote.files, and project.home -> resolved -> recipe -> continuation ->
  project.home, by giving the layout, the recipe's continuation block, the
  check rows and the temp names leaf modules): none may come back.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hpcwizard.project.wizard_steps import STEPS

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "hpcwizard"

#: Circles among top-level imports allowed to stay, each as the set of its
#: modules, with why. None: a new one fails the test.
ALLOWED_CIRCLES: dict[str, frozenset[str]] = {}

WIZARD = "hpcwizard.tui.screens.wizard"


@dataclass(frozen=True)
class Import:
    target: str  # the module named, resolved to an absolute name
    names: tuple[str, ...]  # for ``from target import a, b``: a, b; empty for ``import target``
    deferred: bool  # inside a function: runs when the function is called, not on import


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(tree: ast.Module, package: str) -> Iterator[Import]:
    """Every import of a module but those under ``if TYPE_CHECKING:``.

    ``package`` is the package relative imports start from."""

    def visit(node: ast.AST, deferred: bool) -> Iterator[Import]:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                yield from visit(child, deferred)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(alias.name, (), deferred)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            yield Import(base, tuple(alias.name for alias in node.names), deferred)
        inner = deferred or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            yield from visit(child, inner)

    for statement in tree.body:
        yield from visit(statement, False)


def import_graph(*, with_deferred: bool) -> dict[str, set[str]]:
    """Module -> the package's modules that importing it (or calling into it) imports."""
    paths = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for found in imports_of(ast.parse(path.read_text(encoding="utf-8")), package):
            if found.deferred and not with_deferred:
                continue
            submodules = [f"{found.target}.{n}" for n in found.names if f"{found.target}.{n}" in paths]
            edges.update(submodules)
            # The module itself is a dependency when a name is taken from it (or it
            # is imported whole); `from pkg import submodule` only runs pkg/__init__.
            named = not found.names or len(submodules) < len(found.names)
            parts = found.target.split(".")
            for depth in range(1, len(parts) + 1):
                module = ".".join(parts[:depth])
                if module not in paths or module == name:
                    continue
                # Importing a sibling runs the enclosing package's __init__, which is
                # already running (or ran) when this module is imported: no edge.
                if name.startswith(module + ".") and not (named and module == found.target):
                    continue
                edges.add(module)
        graph[name] = edges
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected parts of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:  # the package is small: recursion is fine
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            part = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                part.append(other)
                if other == node:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def one_cycle(graph: dict[str, set[str]], part: list[str]) -> str:
    """One path round a circle, to name in a failure: ``a -> b -> a``."""
    members = set(part)
    path = [part[0]]
    seen = {part[0]: 0}
    while True:
        step = min(graph[path[-1]] & members)  # deterministic; every member reaches the others
        if step in seen:
            return " -> ".join(path[seen[step]:] + [step])
        seen[step] = len(path)
        path.append(step)


def with_step_screens(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The wizard imports each step's screen by its name in the registry
    (importlib, when it first shows the step): edges the AST does not show."""
    return {**graph, WIZARD: graph[WIZARD] | {step.screen_module for step in STEPS}}


def test_the_graph_sees_the_package():
    # The walk must find the real edges, or an empty graph would pass everything.
    graph = import_graph(with_deferred=True)
    assert "hpcwizard.project.plan" in graph["hpcwizard.project.session"]
    assert "hpcwizard.checks.space" in graph["hpcwizard.checks.preflight"]
    assert "hpcwizard.tui.screens.step" in graph["hpcwizard.tui.screens.token"]
    assert "hpcwizard.prepare" in graph["hpcwizard.tui.screens.download_step"]  # a deferred one
    assert "hpcwizard.prepare" not in import_graph(with_deferred=False)["hpcwizard.tui.screens.download_step"]
    assert "hpcwizard.tui.app" not in graph["hpcwizard.tui.screens.step"]  # under TYPE_CHECKING only
    assert all(module in graph for module in with_step_screens(graph)[WIZARD])


def test_no_import_circle_when_a_module_is_imported():
    graph = import_graph(with_deferred=False)
    parts = {frozenset(part): part for part in circles(graph)}
    found = [one_cycle(graph, part) for members, part in parts.items() if members not in ALLOWED_CIRCLES.values()]
    assert found == [], "import circles among hpcwizard's modules: " + "; ".join(found)
    gone = [name for name, members in ALLOWED_CIRCLES.items() if members not in parts]
    assert gone == [], f"no longer circles: remove {gone} from ALLOWED_CIRCLES"


def test_no_import_circle_even_through_imports_inside_functions():
    graph = with_step_screens(import_graph(with_deferred=True))
    found = [one_cycle(graph, part) for part in circles(graph)]
    assert found == [], "import circles (some through imports inside functions): " + "; ".join(found)


def test_a_circle_is_found_and_named():
    # The finder itself, on a made-up graph: a -> b -> c -> a, and d alone.
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert circles(graph) == [["a", "b", "c"]]
    assert one_cycle(graph, ["a", "b", "c"]) == "a -> b -> c -> a"
    # A step screen importing the wizard again would close the circle the registry broke.
    real = import_graph(with_deferred=True)
    token = "hpcwizard.tui.screens.token"
    again = with_step_screens({**real, token: real[token] | {WIZARD}})
    assert any({WIZARD, token} <= set(part) for part in circles(again))
