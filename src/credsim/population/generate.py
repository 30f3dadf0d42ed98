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

from concurrent.futures import Executor

import numpy as np

from credsim.population import identifiers, kernels
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


def _draw(
    rng: np.random.Generator, p: np.ndarray, size: int, scratch: np.ndarray | None = None
) -> np.ndarray:
    """``size`` draws of category indices with probabilities ``p`` (int16): the first index
    whose cumulative probability exceeds ``U * total``. ``scratch`` (float64, at least ``size``)
    receives the uniforms instead of a fresh array."""
    u = rng.random(size) if scratch is None else rng.random(out=scratch[:size])
    out = np.empty(size, dtype=np.int16)
    kernels.categorical(u, np.cumsum(p), out)
    return out


def _household_sizes(rng: np.random.Generator, n: int, mean: float) -> np.ndarray:
    """Household sizes ``1 + Poisson(mean - 1)`` (capped) whose sum is exactly ``n``."""
    lam = max(mean - 1.0, 0.0)
    parts: list[np.ndarray] = []
    total = 0
    while total < n:
        k = int((n - total) / max(mean, 1.0) * 1.05) + 64
        part, part_total = kernels.clipped_sizes(rng.poisson(lam, k), MAX_HOUSEHOLD)
        parts.append(part)
        total += part_total
    sizes = parts[0] if len(parts) == 1 else np.concatenate(parts)
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


def _ages(
    rng: np.random.Generator,
    pmf: np.ndarray,
    sizes: np.ndarray,
    hh_start: np.ndarray,
    couples: np.ndarray,
    out: np.ndarray,
    scratch: np.ndarray,
) -> None:
    """Ages in household order into ``out`` (see the module docstring for the placement rules).

    Draws are i.i.d., so taking the first adults in draw order as heads and spouses is already
    a random choice. Rank pairing uses keys quantised to 1/16 year (int16, counting sorts).
    ``scratch``: float64 room for ``n`` uniforms.
    """
    n, n_hh = int(hh_start[-1]), sizes.shape[0]
    ages = _draw(rng, pmf, n, scratch)
    need = n_hh + couples.shape[0]
    adult = ages >= ADULT_AGE
    deficit = need - int(np.count_nonzero(adult))
    if deficit > 0:
        fix = rng.choice(np.flatnonzero(~adult), deficit, replace=False)
        adult_p = pmf[ADULT_AGE:] / pmf[ADULT_AGE:].sum()
        ages[fix] = ADULT_AGE + rng.choice(adult_p.shape[0], deficit, p=adult_p)
    del adult
    head_age, spouse_age, pool = kernels.split_ages(ages, n_hh, need, ADULT_AGE, pmf.shape[0])
    del ages
    k = couples.shape[0]
    z_head = np.asarray(rng.normal(0.0, 2.0, k))
    z_spouse = np.asarray(rng.normal(0.0, 2.0, k))
    kernels.place_heads_and_spouses(out, hh_start, couples, head_age, spouse_age, z_head, z_spouse)
    del z_head, z_spouse
    gap = np.asarray(rng.integers(20 * 16, 41 * 16, n - need))  # parent minus 20..40 years
    kernels.place_rest(out, hh_start, head_age, gap, pool)


def _sexes(
    rng: np.random.Generator,
    male_share: float,
    hh_start: np.ndarray,
    couples: np.ndarray,
    out: np.ndarray,
    scratch: np.ndarray,
) -> None:
    """0 female / 1 male into ``out``; members 0 and 1 of each couple have opposite sex."""
    n = int(hh_start[-1])
    rest = n - 2 * couples.shape[0]
    p = min(max((male_share * n - couples.shape[0]) / rest, 0.0), 1.0) if rest > 0 else 0.5
    kernels.sexes(rng.random(out=scratch[:n]), p, hh_start, couples, out)


def _employers(
    rng: np.random.Generator,
    spec: PopulationSpec,
    age: np.ndarray,
    district: np.ndarray,
    org_district: np.ndarray,
    n_districts: int,
    out: np.ndarray,
    scratch: np.ndarray,
) -> None:
    """Entity id of each person's employer into ``out`` (left alone if not employed)."""
    n, n_orgs = age.shape[0], org_district.shape[0]
    if n_orgs == 0:
        return
    u = rng.random(out=scratch[:n])
    who = kernels.employable(age, u, spec.employment_rate.value, ADULT_AGE, WORKING_AGE_MAX)
    u = rng.random(out=scratch[: who.shape[0]])
    anywhere = np.asarray(rng.integers(0, n_orgs, who.shape[0]))
    kernels.assign_employers(who, district, org_district, n_districts, u, anywhere, out)


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
    keys = kernels.pair_keys(a, b)
    del a, b
    keys.sort()
    return kernels.friend_csr(keys, n)


def organizations(spec: PopulationSpec, n_persons: int) -> int:
    """The number of organisations beside ``n_persons`` persons:
    ``round(n_persons * organizations_per_1000 / 1000)``, at least one if the rate is
    positive."""
    rate = spec.organizations_per_1000.value
    n_orgs = int(round(n_persons * rate / 1000))
    return max(n_orgs, 1) if rate > 0 else 0


def generate_population(
    spec: PopulationSpec,
    n_persons: int,
    seed: int | np.random.SeedSequence,
    *,
    with_friends: bool,
    helper: Executor | None = None,
) -> Population:
    """Generate ``n_persons`` persons and their organisations following ``spec``.

    Organisations number :func:`organizations`. See the module docstring for the modelling
    choices.

    ``helper``: an executor on which the identity codes (and the birth dates they move) are
    written while this thread makes the friendships and, once the population is returned, goes
    on with what needs neither (at 13M persons the codes take 1.2 s of one core). Until
    :meth:`Population.complete` has returned, ``code_bytes`` and ``birth_date`` must not be
    read. The same arrays either way.
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
    couples = np.flatnonzero(sizes >= 2)
    scratch = np.empty(n, dtype=np.float64)  # uniforms, drawn into it again and again
    p_district = _shares([d.share.value for d in districts])
    hh_district = _draw(rng_hh, p_district, n_hh, scratch)
    hh_group = _draw(rng_hh, _shares([g.share.value for g in groups]), n_hh, scratch)
    hh_decile = np.asarray(rng_hh.integers(1, 11, size=n_hh), dtype=np.int8)

    n_orgs = organizations(spec, n)

    def column(dtype: type, org_value: int) -> tuple[np.ndarray, np.ndarray]:
        """An entity column and its persons' part (a view) to be filled in place."""
        col: np.ndarray = np.empty(n + n_orgs, dtype=dtype)
        col[n:] = org_value
        return col, col[:n]

    kind = np.full(n + n_orgs, PERSON, dtype=np.int8)
    kind[n:] = ORGANIZATION
    household, p_household = column(np.int32, -1)
    district, p_district_ = column(np.int16, 0)
    group, p_group = column(np.int16, -1)
    decile, p_decile = column(np.int8, 0)
    kernels.expand_households(
        hh_start, hh_district, hh_group, hh_decile, p_household, p_district_, p_group, p_decile
    )
    del hh_district, hh_group, hh_decile

    pmf = age_pmf(spec.age_bands)
    age, p_age = column(np.int16, -1)
    _ages(rng_age, pmf, sizes, hh_start, couples, p_age, scratch)
    sex, p_sex = column(np.int8, -1)
    _sexes(rng_sex, spec.male_share.value, hh_start, couples, p_sex, scratch)
    del couples
    win_start, win_len = identifiers.birth_windows(pmf.shape[0] - 1)
    birth, p_birth = column(np.int32, -1)
    kernels.birth_dates(rng_sex.random(out=scratch), p_age, win_start, win_len, p_birth)

    org_district = _draw(rng_org, p_district, n_orgs)
    district[n:] = org_district
    employer = np.full(n + n_orgs, -1, dtype=np.int32)
    _employers(
        rng_emp, spec, p_age, p_district_, org_district, len(districts), employer[:n], scratch
    )
    del scratch

    district_codes = [int(d.code) for d in districts]
    area_index, code_table = identifiers.birthplace_candidates(
        rng_id, district_codes, [g.area_codes for g in groups], p_district_, p_group
    )
    code_bytes = np.empty((n + n_orgs, 18), dtype=np.uint8)  # ASCII, written in place

    def codes() -> None:
        _, moved = identifiers.ric_code_bytes(
            area_index, code_table, p_birth, p_sex, p_age, win_start, win_len, out=code_bytes[:n]
        )
        if moved is not p_birth:
            p_birth[:] = moved
        orgs = np.array(district_codes)[org_district]
        identifiers.uscc_code_bytes(orgs, rng_id, out=code_bytes[n:])
        code_bytes.flags.writeable = False  # Arrow columns are built over this memory

    pending = helper.submit(codes) if helper is not None else None
    if pending is None:
        codes()

    friends_indptr = friends = None
    if with_friends:
        friends_indptr, friends = _friends(
            rng_fr, spec.friends_mean.value, p_district_, len(districts)
        )

    return Population(
        n_persons=n,
        n_orgs=n_orgs,
        kind=kind,
        district=district,
        group=group,
        sex=sex,
        age=age,
        birth_date=birth,
        income_decile=decile,
        household=household,
        hh_start=hh_start,
        employer=employer,
        code_bytes=code_bytes,
        district_ids=district_ids,
        group_ids=group_ids,
        friends_indptr=friends_indptr,
        friends=friends,
        pending=pending,
    )
