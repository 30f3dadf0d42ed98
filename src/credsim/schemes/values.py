"""Values that carry their provenance: every number (and yes/no fact) in a scheme file.

A :class:`Num` holds a value with exactly one of ``source`` (a bibliography key) or
``assumption`` (one line saying why); :class:`Prob`, :class:`NonNeg` and :class:`Count` add
ranges; :class:`Flag` is the same for yes/no facts. :class:`Strict` is the base of every scheme
model: unknown keys are errors.
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints, field_validator, model_validator

Ident = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, populate_by_name=True)


class Num(Strict):
    """A number with its provenance: exactly one of ``source`` or ``assumption``."""

    value: float
    source: str | None = None
    assumption: str | None = None
    note: str | None = None

    @field_validator("value", mode="before")
    @classmethod
    def _real_number(cls, v: object) -> object:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ValueError("expected a number")
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError("expected a finite number, not NaN or infinity")
        if abs(v) > 1e15:
            raise ValueError("number too large (absolute value above 1e15)")
        return v

    @model_validator(mode="after")
    def _one_provenance(self) -> Num:
        if (self.source is None) == (self.assumption is None):
            raise ValueError("a number needs exactly one of 'source' or 'assumption'")
        if self.assumption is not None and not self.assumption.strip():
            raise ValueError("'assumption' must say why this value was chosen")
        return self


class Flag(Strict):
    """A yes/no fact about a scheme with its provenance (like :class:`Num`)."""

    value: bool
    source: str | None = None
    assumption: str | None = None
    note: str | None = None

    @model_validator(mode="after")
    def _one_provenance(self) -> Flag:
        if (self.source is None) == (self.assumption is None):
            raise ValueError("a fact needs exactly one of 'source' or 'assumption'")
        return self


def _check_range(num: Num | None, lo: float, hi: float, what: str) -> None:
    if num is not None and not (lo <= num.value <= hi):
        raise ValueError(f"{what} must lie in [{lo}, {hi}], got {num.value}")


class Prob(Num):
    """A probability: a :class:`Num` in [0, 1]."""

    @model_validator(mode="after")
    def _unit(self) -> Prob:
        _check_range(self, 0.0, 1.0, "a probability")
        return self


class NonNeg(Num):
    """A non-negative :class:`Num`."""

    @model_validator(mode="after")
    def _nonneg(self) -> NonNeg:
        if self.value < 0:
            raise ValueError(f"expected a non-negative number, got {self.value}")
        return self


class Count(NonNeg):
    """A non-negative whole number (counts, days)."""

    @model_validator(mode="after")
    def _whole(self) -> Count:
        if self.value != int(self.value):
            raise ValueError(f"expected a whole number, got {self.value}")
        return self
