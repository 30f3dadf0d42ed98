"""Strict YAML reading that remembers where every value came from.

PyYAML's safe composer builds a node tree with line marks; we turn it into plain Python data
ourselves so that we can (a) reject duplicate keys, aliases and non-string keys, which plain
``yaml.safe_load`` accepts silently, and (b) keep a map from each dotted path to its line, used
to point validation errors at the right place in the file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

import yaml

from credsim.errors import SchemeError

Path_ = tuple[str | int, ...]
MAX_BYTES = 2_000_000
MAX_DEPTH = 40


class Located:
    """Parsed YAML data plus the line of every path (1-based)."""

    def __init__(self, data: Any, lines: dict[Path_, int], file: str, sha256: str = "") -> None:
        self.data = data
        self.lines = lines
        self.file = file
        self.sha256 = sha256
        """sha256 of the file's bytes (UTF-8 for text given as str)."""
        self.origin: dict[Path_, Located] = {}
        """Paths that came from an overlay (a scenario), with the overlay they came from."""

    def line_of(self, path: Path_) -> int | None:
        """The line of ``path``, or of its nearest ancestor that has one."""
        p = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return self.lines.get((), None)

    def where(self, path: Path_) -> str:
        p = tuple(path)
        origins = self.origin
        while p:
            if p in origins:
                return origins[p].where(("patch", *path))
            p = p[:-1]
        line = self.line_of(path)
        return f"{self.file}:{line}" if line else self.file


def dotted(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def read_yaml_text(text: str | bytes, file: str) -> Located:
    """Parse YAML text strictly; raise :class:`SchemeError` naming ``file`` and the line."""
    digest = hashlib.sha256(text if isinstance(text, bytes) else text.encode()).hexdigest()
    if isinstance(text, bytes):
        if len(text) > MAX_BYTES:
            raise SchemeError(f"{file}: file too large ({len(text)} bytes; at most {MAX_BYTES})")
        raw = text
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise SchemeError(
                f"{file}:{line}: not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8"
            ) from None
    if len(text) > MAX_BYTES:
        raise SchemeError(f"{file}: file too large ({len(text)} characters; at most {MAX_BYTES})")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        # An unclosed bracket or quote is detected further down; the context mark says where the
        # construct was opened, which is the line to fix.
        opened, found = exc.context_mark, exc.problem_mark
        mark = opened if opened is not None else found
        where = f":{mark.line + 1}" if mark is not None else ""
        also = ""
        if opened is not None and found is not None and found.line != opened.line:
            also = f" ({exc.context} at line {opened.line + 1}, detected at line {found.line + 1})"
        raise SchemeError(f"{file}{where}: not valid YAML: {exc.problem}{also}") from None
    except yaml.YAMLError as exc:
        raise SchemeError(f"{file}: not valid YAML: {exc}") from None
    except RecursionError:
        raise SchemeError(f"{file}: nesting too deep") from None
    if node is None:
        raise SchemeError(f"{file}: the file is empty; expected a mapping of scheme fields")
    lines: dict[Path_, int] = {}
    try:
        data = _build(node, (), lines, file, 0, set())
    except RecursionError:
        raise SchemeError(f"{file}: nesting too deep") from None
    return Located(data, lines, file, digest)


def read_yaml(path: str | Path) -> Located:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise SchemeError(f"{p}: cannot read the file ({exc.strerror or exc})") from None
    return read_yaml_text(raw, str(p))


def _scalar(node: yaml.ScalarNode) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def _key(key_node: yaml.Node, path: Path_, file: str) -> str:
    where = f"{file}:{key_node.start_mark.line + 1}"
    if key_node.tag == "tag:yaml.org,2002:merge":
        raise SchemeError(f"{where}: merge keys (<<) are not allowed in {dotted(path)}")
    if not isinstance(key_node, yaml.ScalarNode):
        raise SchemeError(f"{where}: keys must be plain strings in {dotted(path)}")
    try:
        key = _scalar(key_node)
    except (yaml.YAMLError, ValueError, OverflowError) as exc:
        raise SchemeError(f"{where}: cannot read a key in {dotted(path)}: {exc}") from None
    if isinstance(key, bool) or not isinstance(key, str | int | float):
        raise SchemeError(f"{where}: keys must be plain strings in {dotted(path)}, got {key!r}")
    return str(key)


def _build(
    node: yaml.Node, path: Path_, lines: dict[Path_, int], file: str, depth: int, seen: set[int]
) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    where = f"{file}:{lines[path]}"
    if depth > MAX_DEPTH:
        raise SchemeError(f"{where}: {dotted(path)}: nesting deeper than {MAX_DEPTH} levels")
    # The composer turns an alias into the very node its anchor named: meeting a node twice
    # means an alias (and possibly a cycle).
    if id(node) in seen:
        raise SchemeError(f"{where}: {dotted(path)}: anchors and aliases are not allowed")
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = _key(key_node, path, file)
            if key in out:
                raise SchemeError(
                    f"{file}:{key_node.start_mark.line + 1}: duplicate key '{key}' "
                    f"in {dotted(path)}"
                )
            # an error about a field points at its key's line
            lines[(*path, key)] = key_node.start_mark.line + 1
            out[key] = _build(value_node, (*path, key), lines, file, depth + 1, seen)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [
            _build(v, (*path, i), lines, file, depth + 1, seen) for i, v in enumerate(node.value)
        ]
    try:
        value = _scalar(node)
    except (yaml.YAMLError, ValueError, OverflowError) as exc:
        raise SchemeError(f"{where}: {dotted(path)}: cannot read the value: {exc}") from None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, bytes):
        raise SchemeError(f"{where}: {dotted(path)}: binary values are not allowed")
    return value
