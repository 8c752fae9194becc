"""One way from a TOML file to a frozen pydantic model: program, task and evolve configs alike.

Every config model derives from :class:`Frozen`: unknown keys are errors (a typo fails at once,
named), instances are immutable, and each field's docstring is its description. Loading goes
through :func:`load_toml_model`, whose :class:`~orchestrator.errors.ConfigError` names the file and
every bad key, whatever went wrong: a missing file, bad TOML, a nesting deep enough to exhaust the
parser's recursion, or a value the model refuses.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from orchestrator.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class Frozen(BaseModel):
    """Base of every config model: no unknown keys, immutable, documented by docstrings."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


def read_toml(path: Path) -> dict[str, Any]:
    """The table a TOML file holds.

    Raises:
        ConfigError: the file is missing or unreadable, not UTF-8, not TOML, or nested too deep.
    """
    try:
        return tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML: nested too deep") from None


def validate(model: type[M], data: Any, where: str | Path) -> M:
    """``model`` validated from ``data``.

    Raises:
        ConfigError: ``where``, then each bad key and why (an unknown key is named as such).
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {describe_validation(exc)}") from None
    except RecursionError:
        raise ConfigError(f"{where}: nested too deep") from None


def load_toml_model(model: type[M], path: Path) -> M:
    """Read ``path`` and validate it as ``model``.

    Raises:
        ConfigError: as :func:`read_toml` and :func:`validate`.
    """
    return validate(model, read_toml(path), path)


def describe_validation(exc: ValidationError) -> str:
    """A pydantic error as one readable line that names each bad key."""
    parts = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown key {key!r}")
        else:
            parts.append(f"{key}: {err['msg']}")
    return "; ".join(parts)
