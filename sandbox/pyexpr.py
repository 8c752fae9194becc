"""The grammar of an *expression hole*: which byte strings a model may write there.

The ``self`` generator blanks the right-hand side of one statement (``x = <here>``,
``return <here>``) and the model writes a new one, one byte at a time, keeping only bytes after
which the text can still become an expression of this small language (:func:`viable`); it ends
at a newline, which is allowed only once the text is a whole expression (:func:`whole`). So a
sample is valid Python whatever the model's weights are, rather than checked afterwards.

The language: numbers, the names the hole is given (dotted names such as ``self.seconds`` are
single words: a name not in the list cannot be written, so no undefined name can; a name given
with ``(`` and its arity, such as ``max(2+`` (two or more arguments) or ``abs(1`` (exactly
one), is a function: it is always called, with that many arguments, and nothing else is),
``+ - * /``, comparisons ``< > <= >=`` (no ``=`` otherwise: no assignment, no keyword
argument), parentheses (calls and grouping; a comma only inside them), and the words ``if``,
``else``, ``and``, ``or``, ``not``, ``True``, ``False``. No strings, subscripts, lambdas, ``**``
or ``//`` (a huge power or a floor of floats is a crash waiting in a training loop), and
everything on one line.

Standard library only: it runs inside the sampling container too (``sandbox.codelm``).
"""

from __future__ import annotations

import re
import warnings
from functools import lru_cache

KEYWORDS = ("if", "else", "and", "or", "not", "True", "False")
"""The words every hole may use besides its names."""
ALLOWED = frozenset(b" ()+-*/<>=,." b"0123456789_"
                    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
"""Bytes that may appear at all (``=`` only after ``<`` or ``>``)."""
_RUN = re.compile(r"[\w.]+$")
_NUMBER = re.compile(r"(\d+\.?\d*|\.\d+)([eE]\d*)?$")
_TAILS = ("", "0", " x", " else x", " x else x")
"""What may follow a prefix to make it whole, tried in turn (``x`` stands for any name)."""
_BANNED = ("**", "//", "<<", ">>", "==", "<>", "><", "=<", "=>", "  ")


def viable(text: str, names: tuple[str, ...]) -> bool:
    """Whether ``text`` is whole or can become a whole expression of the hole's language."""
    return _viable(text, *_vocab(names))


def whole(text: str, names: tuple[str, ...]) -> bool:
    """Whether ``text`` is a whole expression of the hole's language (where a newline may end
    it)."""
    vocab, calls = _vocab(names)
    return bool(text.strip()) and _lexes(text, vocab, calls) == "word-done" and \
        _depth(text) == 0 and _compiles(text)


Calls = tuple[tuple[str, int, bool], ...]
"""Functions: (name, arguments, whether more may be given)."""


@lru_cache(maxsize=256)
def _vocab(names: tuple[str, ...]) -> tuple[tuple[str, ...], Calls]:
    calls = []
    for name in names:
        if "(" in name:
            word, arity = name.split("(", 1)
            calls.append((word, int(arity.rstrip("+") or 0), arity.endswith("+")))
    words = {n.split("(", 1)[0] for n in names} | set(KEYWORDS)
    return tuple(sorted(words)), tuple(sorted(calls))


def _arity_ok(text: str, calls: Calls, closed_only: bool = False) -> bool:
    """Every call has (or, while open, can still get) the arguments its function takes."""
    table = {name: (n, more) for name, n, more in calls}
    stack: list[tuple[tuple[int, bool] | None, int, bool]] = []  # (arity, commas, content)
    for at, ch in enumerate(text):
        if ch == "(":
            if stack:  # an argument starts with a bracket
                arity, commas, _content = stack[-1]
                if arity is not None and arity[0] == 0 and not arity[1]:
                    return False
                stack[-1] = (arity, commas, True)
            run = _RUN.search(text[:at].rstrip())
            stack.append((table.get(run.group(0)) if run else None, 0, False))
        elif ch == ")" and stack:
            arity, commas, content = stack.pop()
            given = commas + 1 if content else 0
            if arity is not None and (given < arity[0] or (given > arity[0] and not arity[1])):
                return False
        elif stack and ch == ",":
            arity, commas, content = stack[-1]
            if arity is not None and not arity[1] and commas + 1 >= arity[0]:
                return False
            stack[-1] = (arity, commas + 1, False)
        elif stack and not ch.isspace():
            arity, commas, _content = stack[-1]
            if arity is not None and arity[0] == 0 and not arity[1]:
                return False
            stack[-1] = (arity, commas, True)
    return True


@lru_cache(maxsize=1 << 16)
def _viable(text: str, vocab: tuple[str, ...], calls: Calls) -> bool:
    state = _lexes(text, vocab, calls)
    if state == "no":
        return False
    if state == "call-pending":  # a function's name: only its call can follow
        return _viable(text + "(", vocab, calls)
    if state == "dot-pending":
        return _viable(text + "0", vocab, calls)
    if state == "word-part":  # in the middle of a name: viable if some name it starts can be
        run = _RUN.search(text)
        stem = text[: run.start()] if run else text
        word = run.group(0) if run else ""
        return any(_viable(stem + w, vocab, calls) for w in vocab
                   if w.startswith(word) and w != word)
    depth = _depth(text)
    if depth < 0:
        return False
    return any(_compiles(text + tail + ")" * depth) for tail in _TAILS)


def _lexes(text: str, vocab: tuple[str, ...], calls: Calls) -> str:
    """``no``: a byte or word the language does not have, a function not called or a name
    called that is no function; ``word-part``: it ends inside a name that is the start of one
    in the vocabulary; ``call-pending``: it ends with a function's name; ``dot-pending``: with a
lone ``.`` (the start of a number); else ``word-done``."""
    data = text.encode("utf-8", errors="replace")
    if any(b not in ALLOWED for b in data) or text.startswith(" "):
        return "no"
    if any(bad in text for bad in _BANNED) or re.search(r"(?<![<>])=", text):
        return "no"
    if not _arity_ok(text, calls) or re.search(r"[\d.)]\s*\(", text):
        return "no"  # a number or a bracket called
    functions = {name for name, _n, _more in calls}
    for run in re.finditer(r"[\w.]+", text):
        word, at_end = run.group(0), run.end() == len(text)
        if word == "." and at_end:
            return "dot-pending"  # only a number's digits may follow
        if word[0].isdigit() or (word[0] == "." and word[1:2].isdigit()):
            if not _NUMBER.fullmatch(word):
                return "no"
            continue
        if word in vocab:
            after = text[run.end():].lstrip()
            if after[:1] == "(" and word not in functions:
                return "no"
            if word in functions and after[:1] != "(":
                if after or not at_end:
                    return "no"
                return "call-pending"
            continue
        if at_end and any(w.startswith(word) for w in vocab):
            return "word-part"
        return "no"
    return "word-done"


def _depth(text: str) -> int:
    """Open parentheses at the end (-1 once one closed that was never opened); a comma outside
    every parenthesis makes a tuple, which counts as closing too many."""
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                return -1
        elif ch == "," and depth == 0:
            return -1
    return depth


@lru_cache(maxsize=1 << 16)
def _compiles(text: str) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)  # '1 is x' and the like: still Python
        try:
            compile(text, "<hole>", "eval", dont_inherit=True)
        except (SyntaxError, ValueError):
            return False
    return True
