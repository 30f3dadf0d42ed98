"""Synthetic population generator: households, ages, employers, friends and identifiers.

Everything is vectorised numpy (only the identifier strings need one Python step per entity),
so that a 13-million-person city is generated in seconds. The generator is deterministic: each
sub-step draws from its own child of the seed's :class:`numpy.random.SeedSequence`, so the same
(spec, n_persons, seed) yields identical arrays, and ``with_friends`` does not change the others.

Modelling choices (the spec gives shares and means, not a full demography):

* Household sizes are ``1 + Poisson(mean - 1)`` capped at :data:`MAX_HOUSEHOLD`; every household
  has one district, one population group and one income decile (uniform 1..10).
* Ages are first drawn i.i.d. from ``spec.age_bands`` (each band's share spread evenly over its
  whole years), so the marginal matches the bands exactly. They are then placed: random adults
  become heads (member 0); further random adults become spouses (member 1), paired with heads by
  rank of a noisy age so that spouses are of similar age; everyone left (children and remaining
  adults) fills members 2+, paired by rank with the target ``head age - U{20..40}``, so these are
  mostly the head's children. If the bands hold too few adults for every head and spouse, some
  minors are redrawn from the adult part of the bands (the marginal then shifts towards adults).
* Sex: members 0 and 1 of a household of two or more have opposite sex; the others are male
  with a probability chosen so that the overall male share is ``spec.male_share``.
* Birth dates are uniform over the dates that give exactly the drawn age on day 0 (2019-01-01).
* Employers: adults aged 18..64 are employed with ``spec.employment_rate`` by a random
  organisation of their own district (any organisation if their district has none).
* Friends: :data:`FRIENDS_IN_DISTRICT` of the random friendships are within a district, the rest
  anywhere; pairs are deduplicated, so the mean degree is slightly below ``spec.friends_mean``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from credsim.population import identifiers
from credsim.population.types import ORGANIZATION, PERSON, Population
from credsim.schemes.model import AgeBand, PopulationSpec

MAX_HOUSEHOLD = 8  # largest household size drawn
FRIENDS_IN_DISTRICT = 0.9  # share of friendships drawn within the person's own district
ADULT_AGE = 18
WORKING_AGE_MAX = 64


def _seed_sequence(seed: int | np.random.SeedSequence) -> np.random.SeedSequence:
    """A fresh SeedSequence (a given one is copied, so spawning here never mutates it)."""
    if isinstance(seed, np.random.SeedSequence):
        return np.random.SeedSequence(
            seed.entropy, spawn_key=seed.spawn_key, pool_size=seed.pool_size
        )
    return np.random.SeedSequence(seed)


def _shares(values: list[float]) -> np.ndarray:
    """Normalise shares to probabilities (uniform if they are all zero)."""
    p = np.asarray(values, dtype=np.float64)
    total = p.sum()
    return p / total if total > 0 else np.full(p.shape, 1.0 / p.shape[0])


def _draw(rng: np.random.Generator, p: np.ndarray, size: int) -> np.ndarray:
    """``size`` draws of category indices with probabilities ``p`` (int16)."""
    cdf = np.cumsum(p)
    idx = np.searchsorted(cdf, rng.random(size) * cdf[-1], side="right")
    return np.minimum(idx, p.shape[0] - 1).astype(np.int16)


def _household_sizes(rng: np.random.Generator, n: int, mean: float) -> np.ndarray:
    """Household sizes ``1 + Poisson(mean - 1)`` (capped) whose sum is exactly ``n``."""
    lam = max(mean - 1.0, 0.0)
    parts: list[np.ndarray] = []
    total = 0
    while total < n:
        k = int((n - total) / max(mean, 1.0) * 1.05) + 64
        part = 1 + np.minimum(rng.poisson(lam, k), MAX_HOUSEHOLD - 1)
        parts.append(part)
        total += int(part.sum())
    sizes = np.concatenate(parts).astype(np.int64)
    cum = np.cumsum(sizes)
    h = int(np.searchsorted(cum, n))  # household that reaches n persons
    sizes = sizes[: h + 1]
    sizes[h] -= int(cum[h]) - n
    return sizes


def age_pmf(bands: list[AgeBand]) -> np.ndarray:
    """Probability of each whole age 0..max, each band's share spread evenly over its years."""
    top = max(int(b.max.value) for b in bands)
    pmf = np.zeros(top + 1)
    for b in bands:
        lo, hi = int(b.min.value), int(b.max.value)
        if hi < lo:
            raise ValueError(f"age band min {lo} is above its max {hi}")
        pmf[lo : hi + 1] += b.share.value / (hi - lo + 1)
    if pmf[ADULT_AGE:].sum() <= 0:
        raise ValueError("age_bands give no weight to adults (18+), who head households")
    return pmf / pmf.sum()


def _sorted_by(key: np.ndarray) -> np.ndarray:
    """Argsort of a small-range integer key (int16: numpy uses radix sort, O(n))."""
    return np.argsort(key.astype(np.int16), kind="stable")


def _ages(
    rng: np.random.Generator,
    pmf: np.ndarray,
    sizes: np.ndarray,
    hh_start: np.ndarray,
    member: np.ndarray,
) -> np.ndarray:
    """Ages in household order (see the module docstring for the placement rules).

    Draws are i.i.d., so taking the first adults in draw order as heads and spouses is already
    a random choice. Rank pairing uses keys quantised to 1/16 year so that the sorts are radix
    sorts on int16.
    """
    n, n_hh = int(hh_start[-1]), sizes.shape[0]
    ages = _draw(rng, pmf, n)
    couples = np.flatnonzero(sizes >= 2)
    need = n_hh + couples.shape[0]
    adult = ages >= ADULT_AGE
    deficit = need - int(adult.sum())
    if deficit > 0:
        fix = rng.choice(np.flatnonzero(~adult), deficit, replace=False)
        adult_p = pmf[ADULT_AGE:] / pmf[ADULT_AGE:].sum()
        ages[fix] = ADULT_AGE + rng.choice(adult_p.shape[0], deficit, p=adult_p)
        adult[fix] = True
    adults = np.flatnonzero(adult)
    head_age = ages[adults[:n_hh]]
    spouse_age = ages[adults[n_hh:need]]
    pool = np.sort(np.concatenate([ages[adults[need:]], ages[~adult]]))

    out = np.empty(n, dtype=np.int16)
    out[hh_start[:-1]] = head_age
    k = couples.shape[0]
    noisy_head = np.rint((head_age[couples] + rng.normal(0.0, 2.0, k)) * 16)
    noisy_spouse = np.rint((spouse_age + rng.normal(0.0, 2.0, k)) * 16)
    paired = np.empty_like(spouse_age)
    paired[_sorted_by(noisy_head)] = spouse_age[_sorted_by(noisy_spouse)]
    out[hh_start[couples] + 1] = paired

    slots = np.flatnonzero(member >= 2)
    slot_hh = np.repeat(np.arange(n_hh), np.maximum(sizes - 2, 0))
    gap = rng.integers(20 * 16, 41 * 16, slots.shape[0])  # parent minus 20..40 years
    out[slots[_sorted_by(head_age[slot_hh].astype(np.int32) * 16 - gap)]] = pool
    return out


def _sexes(
    rng: np.random.Generator, male_share: float, hh_start: np.ndarray, sizes: np.ndarray
) -> np.ndarray:
    """0 female / 1 male; members 0 and 1 of each couple household have opposite sex."""
    n = int(hh_start[-1])
    couples = np.flatnonzero(sizes >= 2)
    rest = n - 2 * couples.shape[0]
    p = min(max((male_share * n - couples.shape[0]) / rest, 0.0), 1.0) if rest > 0 else 0.5
    sex = (rng.random(n) < p).astype(np.int8)
    sex[hh_start[couples] + 1] = 1 - sex[hh_start[couples]]
    return sex


def _pick_in_blocks(
    rng: np.random.Generator, block: np.ndarray, n_blocks: int, members_block: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each entry of ``members_block``, a uniformly random index ``i`` with ``block[i]``
    equal to it; returns (indices, found). ``found`` is False where that block is empty (the
    index is then meaningless). ``block`` must not be empty."""
    order = np.argsort(block.astype(np.int16), kind="stable")  # radix sort
    count = np.bincount(block, minlength=n_blocks)
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    c = count[members_block]
    found = c > 0
    pos = start[members_block] + np.floor(rng.random(members_block.shape[0]) * c).astype(np.int64)
    return order[np.where(found, pos, 0)], found


def _employers(
    rng: np.random.Generator,
    spec: PopulationSpec,
    age: np.ndarray,
    district: np.ndarray,
    org_district: np.ndarray,
    n_districts: int,
) -> np.ndarray:
    """Entity id of each person's employer (-1 if not employed)."""
    n, n_orgs = age.shape[0], org_district.shape[0]
    employer = np.full(n, -1, dtype=np.int32)
    if n_orgs == 0:
        return employer
    working = (age >= ADULT_AGE) & (age <= WORKING_AGE_MAX)
    who = np.flatnonzero(working & (rng.random(n) < spec.employment_rate.value))
    local, found = _pick_in_blocks(rng, org_district, n_districts, district[who])
    anywhere = rng.integers(0, n_orgs, who.shape[0])
    employer[who] = n + np.where(found, local, anywhere)
    return employer


def _friends(
    rng: np.random.Generator, mean: float, district: np.ndarray, n_districts: int
) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric random friendship graph over persons as CSR (indptr int64, friends int32).

    Draws ``n * mean / 2`` random pairs (most within a district), drops self loops and
    duplicates via sorted packed int64 keys ``lo << 32 | hi``, then fills both directions.
    """
    n = district.shape[0]
    m = int(round(n * mean / 2))
    perm = np.argsort(district, kind="stable")  # persons grouped by district (radix sort)
    count = np.bincount(district, minlength=n_districts)
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    m_within = rng.multinomial(rng.binomial(m, FRIENDS_IN_DISTRICT), count / n)
    ends = [rng.integers(0, n, (2, m - int(m_within.sum())), dtype=np.int32)]
    for d in np.flatnonzero(m_within):  # a loop over districts, not persons
        ends.append(perm[start[d] + rng.integers(0, count[d], (2, m_within[d]))].astype(np.int32))
    a, b = np.concatenate(ends, axis=1)
    del ends, perm
    keep = a != b
    a, b = a[keep], b[keep]
    edges = (np.minimum(a, b).astype(np.int64) << 32) | np.maximum(a, b)
    del a, b, keep
    edges.sort()  # sort + diff: far faster than np.unique's hash path
    first = np.ones(edges.shape[0], dtype=bool)
    first[1:] = edges[1:] != edges[:-1]
    edges = edges[first]
    lo, hi = edges >> 32, edges & 0xFFFFFFFF
    del edges
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(lo, minlength=n) + np.bincount(hi, minlength=n), out=indptr[1:])
    return indptr, _fill_csr(lo, hi, indptr)


@njit(cache=True)
def _fill_csr(
    lo: np.ndarray, hi: np.ndarray, indptr: np.ndarray
) -> np.ndarray:  # pragma: no cover (numba)
    """Both directions of edges sorted by (lo, hi) into CSR, in O(edges).

    Row ``r`` receives first its smaller neighbours (edges where it is ``hi``, met in ``lo``
    order), then its larger ones (where it is ``lo``, in ``hi`` order): rows come out sorted.
    """
    nxt = indptr[:-1].copy()
    out = np.empty(indptr[-1], dtype=np.int32)
    for e in range(lo.shape[0]):
        a, b = lo[e], hi[e]
        out[nxt[a]] = b
        nxt[a] += 1
        out[nxt[b]] = a
        nxt[b] += 1
    return out


def generate_population(
    spec: PopulationSpec, n_persons: int, seed: int | np.random.SeedSequence, *, with_friends: bool
) -> Population:
    """Generate ``n_persons`` persons and their organisations following ``spec``.

    Organisations number ``round(n_persons * organizations_per_1000 / 1000)`` (at least one
    if the rate is positive). See the module docstring for the modelling choices.
    """
    if n_persons < 1:
        raise ValueError("n_persons must be at least 1")
    s = _seed_sequence(seed).spawn(7)
    rng_hh, rng_age, rng_sex, rng_org, rng_emp, rng_id, rng_fr = (
        np.random.default_rng(x) for x in s
    )
    district_ids, group_ids = list(spec.districts), list(spec.groups)
    districts, groups = list(spec.districts.values()), list(spec.groups.values())
    n = n_persons

    sizes = _household_sizes(rng_hh, n, spec.household_size_mean.value)
    n_hh = sizes.shape[0]
    hh_start = np.zeros(n_hh + 1, dtype=np.int64)
    np.cumsum(sizes, out=hh_start[1:])
    household = np.repeat(np.arange(n_hh, dtype=np.int32), sizes)
    member = np.arange(n, dtype=np.int64) - hh_start[:-1][household]
    p_district = _shares([d.share.value for d in districts])
    hh_district = _draw(rng_hh, p_district, n_hh)
    hh_group = _draw(rng_hh, _shares([g.share.value for g in groups]), n_hh)
    hh_decile = np.asarray(rng_hh.integers(1, 11, size=n_hh), dtype=np.int8)

    pmf = age_pmf(spec.age_bands)
    age = _ages(rng_age, pmf, sizes, hh_start, member)
    sex = _sexes(rng_sex, spec.male_share.value, hh_start, sizes)
    win_start, win_len = identifiers.birth_windows(pmf.shape[0] - 1)
    birth = win_start[age] + np.floor(rng_sex.random(n) * win_len[age]).astype(np.int64)

    rate = spec.organizations_per_1000.value
    n_orgs = int(round(n * rate / 1000))
    n_orgs = max(n_orgs, 1) if rate > 0 else 0
    org_district = _draw(rng_org, p_district, n_orgs)

    def pad(a: np.ndarray, fill: int, dtype: type) -> np.ndarray:
        return np.concatenate([a.astype(dtype), np.full(n_orgs, fill, dtype=dtype)])

    district = np.concatenate([hh_district[household], org_district])
    employer = pad(
        _employers(rng_emp, spec, age, district[:n], org_district, len(districts)), -1, np.int32
    )

    group = hh_group[household]
    district_codes = [int(d.code) for d in districts]
    area_index, code_table = identifiers.birthplace_candidates(
        rng_id, district_codes, [g.area_codes for g in groups], district[:n], group
    )
    ric, birth = identifiers.ric_codes(area_index, code_table, birth, sex, age, win_start, win_len)
    org_codes = identifiers.uscc_codes(np.array(district_codes)[org_district], rng_id)
    codes = np.concatenate([ric, org_codes])

    friends_indptr = friends = None
    if with_friends:
        friends_indptr, friends = _friends(
            rng_fr, spec.friends_mean.value, district[:n], len(districts)
        )

    return Population(
        n_persons=n,
        n_orgs=n_orgs,
        kind=pad(np.full(n, PERSON), ORGANIZATION, np.int8),
        district=district.astype(np.int16),
        group=pad(group, -1, np.int16),
        sex=pad(sex, -1, np.int8),
        age=pad(age, -1, np.int16),
        birth_date=pad(birth, -1, np.int32),
        income_decile=pad(hh_decile[household], 0, np.int8),
        household=pad(household, -1, np.int32),
        hh_start=hh_start,
        employer=employer,
        codes=codes,
        district_ids=district_ids,
        group_ids=group_ids,
        friends_indptr=friends_indptr,
        friends=friends,
    )
