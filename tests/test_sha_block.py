"""SHA-256's compression function as credsim-ledger-v7 chains records with it
(credsim.store.sha_block): the compiled intrinsic (with the CPU's SHA extensions where it has
them) and its portable form equal the Python reference and a compression function written in
the tests apart from credsim's, which with SHA-256's initial words and padding is hashlib's
SHA-256."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from credsim.store import sha_block
from tiny import sha256_compress

IV = bytes.fromhex("6a09e667bb67ae853c6ef372a54ff53a510e527f9b05688c1f83d9ab5be0cd19")


def _padded(msg: bytes) -> bytes:
    return msg + b"\x80" + bytes((55 - len(msg)) % 64) + (8 * len(msg)).to_bytes(8, "big")


@pytest.mark.parametrize("msg", [b"", b"abc", bytes(range(55)), bytes(range(56)), b"x" * 200])
def test_the_compression_function_from_the_initial_words_is_sha256(msg: bytes) -> None:
    want = hashlib.sha256(msg).digest()
    assert sha256_compress(IV, _padded(msg)) == want
    assert sha_block.chain_py(IV, _padded(msg)) == want


def test_the_known_answer_of_abc() -> None:
    """FIPS 180-4's example: one block, "abc" padded."""
    digest = sha256_compress(IV, _padded(b"abc"))
    assert digest.hex() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    counts=st.lists(st.integers(1, 3), min_size=1, max_size=12),
    w=st.sampled_from([4, 8, 32]),
)
def test_the_compiled_chains_equal_the_references(seed: int, counts: list[int], w: int) -> None:
    rng = np.random.default_rng(seed)
    n = len(counts)
    rows = rng.integers(0, 256, (n, 192), dtype=np.uint8)
    prev = rng.integers(0, 256, 32, dtype=np.uint8).tobytes()
    want, d = [], prev
    for i, c in enumerate(counts):
        d = sha256_compress(d, rows[i, : 64 * c].tobytes())
        want.append(d)
    assert sha_block.chain_py(prev, rows[0, : 64 * counts[0]].tobytes()) == want[0]
    for portable in (False, True):
        out = np.empty((n, w), np.uint8)
        head = sha_block.chain_rows(rows, np.array(counts, np.uint8), prev, out, portable)
        assert head == want[-1]
        assert [bytes(r) for r in out] == [x[:w] for x in want]


def test_state_and_digest_convert_both_ways() -> None:
    digest = bytes(range(32))
    state = sha_block.state_of(digest)
    assert sha_block.digest_of(state) == digest
    # lanes F, E, B, A, H, G, D, C: A is the digest's first word
    assert int(state[3]) == int.from_bytes(digest[:4], "big")
    assert int(state[0]) == int.from_bytes(digest[20:24], "big")


def test_the_compiled_function_is_checked_against_hashlib() -> None:
    sha_block.check()  # raises when they differ


def test_rows_must_hold_the_blocks_their_counts_say() -> None:
    out = np.empty((1, 4), np.uint8)
    with pytest.raises(ValueError, match="whole blocks"):
        sha_block.chain_rows(np.zeros((1, 64), np.uint8), np.array([2], np.uint8), IV, out)
    with pytest.raises(ValueError, match="whole blocks"):
        sha_block.chain_rows(np.zeros((1, 60), np.uint8), np.array([1], np.uint8), IV, out)
    assert sha_block.chain_rows(np.zeros((0, 64), np.uint8), np.zeros(0, np.uint8), IV, out) == IV
    with pytest.raises(ValueError, match="64-byte block"):
        sha_block.compress_py([0] * 8, b"short")
