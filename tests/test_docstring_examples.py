"""The examples in the docstrings of the library and its entry points run and print what they
show (doctest), so that the documentation cannot drift from the code."""

import doctest
import importlib
import pathlib

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("nar", "data_prep", "experiments")


def _modules_with_examples() -> list[str]:
  names = []
  for package in PACKAGES:
    for path in sorted((REPO_ROOT / package).rglob("*.py")):
      if ">>>" in path.read_text(encoding="utf-8"):
        relative = path.relative_to(REPO_ROOT).with_suffix("")
        names.append(".".join(part for part in relative.parts if part != "__init__"))
  return names


def test_the_library_has_docstring_examples():
  assert _modules_with_examples()


@pytest.mark.parametrize("module_name", _modules_with_examples())
def test_docstring_examples_run(module_name):
  module = importlib.import_module(module_name)
  results = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
  assert results.attempted > 0
  assert results.failed == 0, f"{results.failed} docstring examples of {module_name} failed"
