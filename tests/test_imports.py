"""The direction of imports between the repository's packages: no import cycles inside `nar/`,
the library never imports `experiments/` or `data_prep/`, and `data_prep/` never imports
`experiments/`.

Imports are read from the source with `ast`, every one of them: at module level, inside
functions (lazy imports) and under `if TYPE_CHECKING:`.
"""

import ast
import pathlib

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("nar", "data_prep", "experiments")


def module_name(path: pathlib.Path, root: pathlib.Path = REPO_ROOT) -> str:
  """The dotted module name of a source file under `root`."""
  parts = list(path.relative_to(root).with_suffix("").parts)
  if parts[-1] == "__init__":
    parts.pop()
  return ".".join(parts)


def repository_modules(packages=PACKAGES,
                       root: pathlib.Path = REPO_ROOT) -> dict[str, pathlib.Path]:
  """Module name -> source file of every module of the given top-level packages."""
  modules = {}
  for package in packages:
    for path in sorted((root / package).rglob("*.py")):
      modules[module_name(path, root)] = path
  return modules


def imported_modules(path: pathlib.Path, modules: dict[str, pathlib.Path],
                     root: pathlib.Path = REPO_ROOT) -> set[str]:
  """The repository modules a source file imports, wherever in the file the import is.

  `from a.b import c` imports the module `a.b.c` when there is one, else the module `a.b`
  (`c` is then a name defined in it). Relative imports are resolved against the file's
  package. Packages a module merely sits in are not counted.
  """
  name = module_name(path, root)
  package = name if path.name == "__init__.py" else name.rpartition(".")[0]
  found = set()
  for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
    if isinstance(node, ast.Import):
      found.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
      if node.level:
        base = package.split(".")[:len(package.split(".")) - node.level + 1]
        source = ".".join(base + ([node.module] if node.module else []))
      else:
        source = node.module
      for alias in node.names:
        submodule = f"{source}.{alias.name}"
        found.add(submodule if submodule in modules else source)
  return {module for module in found if module in modules}


def import_graph(packages=PACKAGES, root: pathlib.Path = REPO_ROOT) -> dict[str, set[str]]:
  """Module -> the repository modules it imports."""
  modules = repository_modules(packages, root)
  return {name: imported_modules(path, modules, root) for name, path in modules.items()}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """The import cycles of a graph: one list of modules per strongly connected component of
  more than one module (or of a module importing itself), sorted (Tarjan's algorithm)."""
  index, low, on_stack, stack, cycles = {}, {}, set(), [], []

  def visit(node):
    index[node] = low[node] = len(index)
    stack.append(node)
    on_stack.add(node)
    for target in sorted(graph.get(node, ())):
      if target not in index:
        visit(target)
        low[node] = min(low[node], low[target])
      elif target in on_stack:
        low[node] = min(low[node], index[target])
    if low[node] == index[node]:
      component = []
      while True:
        member = stack.pop()
        on_stack.discard(member)
        component.append(member)
        if member == node:
          break
      if len(component) > 1 or node in graph.get(node, ()):
        cycles.append(sorted(component))

  for node in sorted(graph):
    if node not in index:
      visit(node)
  return sorted(cycles)


def imports_into(graph, importer_package: str, imported_package: str) -> list[str]:
  """`importer -> imported` for every import of a module of one top-level package by a
  module of another."""
  top = lambda module: module.split(".")[0]
  return sorted(f"{source} -> {target}" for source, targets in graph.items()
                for target in targets
                if top(source) == importer_package and top(target) == imported_package)


@pytest.fixture(scope="module")
def graph():
  return import_graph()


def test_the_library_has_no_import_cycles(graph):
  library = {name: {t for t in targets if t.split(".")[0] == "nar"}
             for name, targets in graph.items() if name.split(".")[0] == "nar"}
  assert len(library) > 20 and "nar.simulation.dataset" in library
  assert import_cycles(library) == []


def test_the_library_imports_neither_experiments_nor_data_prep(graph):
  assert imports_into(graph, "nar", "experiments") == []
  assert imports_into(graph, "nar", "data_prep") == []


# The library's layers, lowest first: a module imports from its own layer or lower ones only.
LAYERS = (("nar.data", "nar.paths", "nar.logs"), ("nar.simulation",), ("nar.method",),
          ("nar.models",), ("nar.eval",), ("nar.train",))


def _layer(module: str) -> int | None:
  for level, prefixes in enumerate(LAYERS):
    if any(module == p or module.startswith(p + ".") for p in prefixes):
      return level
  return None


def test_the_library_s_arrows_point_down(graph):
  upward = sorted(f"{source} -> {target}" for source, targets in graph.items()
                  for target in targets
                  if _layer(source) is not None and _layer(target) is not None
                  and _layer(target) > _layer(source))
  assert upward == []
  assert _layer("nar.data.pipeline") < _layer("nar.method.pose_bank") < _layer("nar.train.step")


def test_data_prep_does_not_import_experiments(graph):
  assert imports_into(graph, "data_prep", "experiments") == []


def test_the_checks_see_lazy_and_relative_imports_and_their_cycles(tmp_path):
  files = {
      "lib/__init__.py": "from lib import a\n",
      "lib/a.py": "import numpy as np\nfrom lib.b import VALUE\n",
      "lib/b.py": "VALUE = 1\n\ndef late():\n  from . import a\n  return a\n",
      "lib/c.py": "from lib import b\n",
      "app/__init__.py": "",
      "app/main.py": "import lib.c\n",
  }
  for name, text in files.items():
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / name).write_text(text)
  graph = import_graph(("lib", "app"), root=tmp_path)
  assert graph == {"lib": {"lib.a"}, "lib.a": {"lib.b"}, "lib.b": {"lib.a"},
                   "lib.c": {"lib.b"}, "app": set(), "app.main": {"lib.c"}}
  assert import_cycles(graph) == [["lib.a", "lib.b"]]
  assert import_cycles({"d": {"d"}}) == [["d"]]
  assert imports_into(graph, "app", "lib") == ["app.main -> lib.c"]
  assert imports_into(graph, "lib", "app") == []
