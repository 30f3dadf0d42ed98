"""The vectorised RIC check character equals python-stdnum's on random numbers."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum.cn import ric

from credsim.population.identifiers import _ric_strings


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(10**16, 10**17 - 1), min_size=1, max_size=200))
def test_check_character_is_stdnums(bodies: list[int]) -> None:
    numbers = np.array(bodies, np.int64) * 10  # 17 digits and a placeholder 0
    got = _ric_strings(numbers)
    want = [str(b) + ric.calc_check_digit(str(b) + "0") for b in bodies]
    assert list(got) == want
    assert all(isinstance(c, str) for c in got)
