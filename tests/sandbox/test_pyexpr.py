"""The expression-hole grammar: what a model may write where a value goes, byte by byte."""

from __future__ import annotations

import ast
import random

import pytest

from sandbox.pyexpr import viable, whole

NAMES = ("progress", "rest", "LEARNING_RATE", "self.wall0", "max(2+", "abs(1",
         "time.monotonic(0", "math.cos(1")

GOOD = [
    "LEARNING_RATE * max(0.1, 1.0 - rest)",
    "progress",
    "(progress - 0.5) / max(1e-9, 1.0 - rest)",
    "LEARNING_RATE * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(3.14 * rest)))",
    "time.monotonic() - self.wall0",
    "rest if progress < 0.5 else -rest",
    "not progress or rest",
    "abs(-2.5e-3) * .5",
    "max(1, 2, abs(rest))",
    "progress >= 1",
]


@pytest.mark.parametrize("text", GOOD)
def test_a_whole_expression_over_the_given_names_is_whole_and_each_prefix_viable(text):
    assert whole(text, NAMES)
    for n in range(1, len(text)):
        assert viable(text[:n], NAMES), f"dead end at {text[:n]!r}"


@pytest.mark.parametrize("text", [
    "undefined_name",  # a name not given cannot even be started
    "progress = 1",  # no assignment
    "f(x=1)",  # no keyword argument
    "progress, rest",  # no tuple
    "progress ** 99",  # no power
    "progress // 2",  # no floor division
    "'a'",  # no string
    "progress[0]",  # no subscript
    "progress(1)",  # a number is not called
    "(progress)(1)",  # nor a bracket
    "1 (2)",
    "max + 1",  # a function is always called
    "max(1)",  # ...with its arity
    "abs(1, 2)",
    "time.monotonic(1)",
    "100 .real",  # no attribute of a number
    "progress.real",  # no attribute not given
    "lambda: 1",
    "progress\nrest",  # one line
    " progress",  # starts with the value
])
def test_what_the_language_does_not_have_is_never_whole(text):
    assert not whole(text, NAMES)
    assert not all(viable(text[:n], NAMES) for n in range(1, len(text) + 1))


def test_an_unfinished_expression_is_viable_but_not_whole():
    for text in ("LEARNING_RATE *", "max(1,", "rest if progress", "1e-", "prog", "math.", "."):
        assert viable(text, NAMES) and not whole(text, NAMES), text


def test_random_walks_through_the_grammar_only_end_at_python_over_the_given_names():
    """What the sampler does with any model: draw bytes, keep the viable ones, stop at a
    newline only when whole. Whatever the draws, what stops is Python using given names."""
    rng = random.Random(5)
    alphabet = [chr(b) for b in range(32, 127)] + ["\n"]
    allowed = {n.split("(")[0] for n in NAMES} | {"True", "False"}
    ended = 0
    for _ in range(60):
        text = ""
        for _step in range(40):
            order = rng.sample(alphabet, len(alphabet))
            nxt = next((c for c in order if (c == "\n" and whole(text, NAMES))
                        or (c != "\n" and viable(text + c, NAMES))), None)
            if nxt is None or nxt == "\n":
                break
            text += nxt
        if whole(text, NAMES):
            ended += 1
            tree = ast.parse(text, mode="eval")
            bases = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
            chains = {ast.unparse(n) for n in ast.walk(tree) if id(n) not in bases
                      and isinstance(n, ast.Name | ast.Attribute)}
            assert chains <= allowed, text
    assert ended >= 10  # the walks do end (14 of 60 with this seed)
