"""Type aliases shared by the package. This module performs no I/O."""

from __future__ import annotations

from typing import Any, TypeAlias

#: A command key as the caller gave it: a name, or an integer position.
Key: TypeAlias = str | int

#: A JSON value as decoded by the standard library.
JSON: TypeAlias = Any

#: Parameters of one REST method: nested mappings, sequences and scalars.
Params: TypeAlias = dict[str, Any]
