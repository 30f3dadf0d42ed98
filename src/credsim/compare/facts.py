"""A derived property's value: true, false or unknown, with the basis that decided it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Fact:
    """A yes / no / unknown property with what decided it."""

    value: bool | None
    basis: str

    @property
    def shown(self) -> str:
        return show(self.value)


def show(value: bool | None) -> str:
    return "unknown" if value is None else ("yes" if value else "no")
