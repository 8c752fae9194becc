"""The undefined-names check: a proposal that would crash at import on a made-up name is
rejected before any container, with the name."""

from __future__ import annotations

from orchestrator.generators.base import Reason, Rejected
from orchestrator.generators.edits.validate import check_files, undefined_names

PARENT = {"train.py": "import math\n\n\ndef f(x):\n    return math.sqrt(x)\n"}


def test_names_defined_nowhere_are_listed_once_in_order_of_use():
    source = "import os\nx = foo(os.sep)\ndef f():\n    return bar + foo\n"
    assert undefined_names(source) == ["foo", "bar"]


def test_builtins_imports_locals_and_star_imports_are_not_undefined():
    source = ("from torch import *\nimport math as m\n\n\ndef f(a, *args, k=1, **kw):\n"
              "    total = len(args) + m.pi + k\n    for i in range(a):\n        total += i\n"
              "    return total, __file__, tensor\n")
    assert undefined_names(source) == []


def test_a_source_that_does_not_parse_has_no_names_to_report():
    assert undefined_names("def (") == []


def test_an_edit_using_an_undefined_name_is_rejected_with_it():
    edited = {"train.py": PARENT["train.py"].replace("math.sqrt(x)", "mathx.sqrt(x)")}
    try:
        check_files(edited, PARENT, ("train.py",), frozenset())
    except Rejected as exc:
        assert exc.reason is Reason.UNDEFINED
        assert "mathx" in exc.detail
    else:
        raise AssertionError("an undefined name passed the check")
