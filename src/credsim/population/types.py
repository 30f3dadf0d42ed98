"""The synthetic population as columnar arrays (the contract between population and engine).

Entities are numbered 0..n-1: persons first (0..n_persons-1), then organisations. Persons are
stored in household order, so the members of household ``h`` are the contiguous range
``hh_start[h]:hh_start[h+1]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PERSON = 0
ORGANIZATION = 1


@dataclass
class Population:
    n_persons: int
    n_orgs: int
    kind: np.ndarray  # int8[N]: PERSON or ORGANIZATION
    district: np.ndarray  # int16[N], index into district_ids (organisations too)
    group: np.ndarray  # int16[N], index into group_ids; -1 for organisations
    sex: np.ndarray  # int8[N]: 0 female, 1 male, -1 organisation
    age: np.ndarray  # int16[N] in years at day 0; -1 for organisations
    birth_date: np.ndarray  # int32[N] days since 1970-01-01; -1 for organisations
    income_decile: np.ndarray  # int8[N] 1..10; 0 for organisations
    household: np.ndarray  # int32[N] household index; -1 for organisations
    hh_start: np.ndarray  # int64[H+1] offsets of households in person order
    employer: np.ndarray  # int32[N] entity id of the employing organisation, -1 if none
    codes: np.ndarray  # object[N] of str: 18-digit RIC for persons, 18-char USCC for orgs
    district_ids: list[str]
    group_ids: list[str]
    friends_indptr: np.ndarray | None = None  # int64[n_persons+1] CSR over persons
    friends: np.ndarray | None = None  # int32[...] friend entity ids (symmetric graph)

    @property
    def n(self) -> int:
        return self.n_persons + self.n_orgs

    @property
    def n_households(self) -> int:
        return int(self.hh_start.shape[0] - 1)
