"""Loading schemes: bundled ids or paths, strict parsing, schema and semantic validation.

Every failure is a :class:`~credsim.errors.SchemeError` whose lines each name the file, the line
where possible, the dotted path of the field and what was expected.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from credsim.errors import SchemeError
from credsim.schemes.model import Scenario, Scheme
from credsim.schemes.semantic import check_semantics
from credsim.schemes.yamlio import Located, dotted, read_yaml, read_yaml_text

MAX_ERRORS = 20


@dataclass(frozen=True)
class LoadedScheme:
    """A validated scheme with where it came from (and the scenarios laid over it)."""

    scheme: Scheme
    path: str
    sha256: str
    located: Located
    scenarios: tuple[dict[str, str], ...] = ()
    """id, path and sha256 of each scenario applied, in order."""


def _package_file(name: str) -> Path:
    return Path(str(resources.files("credsim.schemes").joinpath(name)))


def bundled_dir() -> Path:
    return _package_file("bundled")


def bundled_ids() -> list[str]:
    """Ids of the schemes shipped with credsim, sorted."""
    return sorted(p.stem for p in bundled_dir().glob("*.yaml"))


def resolve(scheme: str | Path) -> Path:
    """A bundled id or a path to a scheme file."""
    s = str(scheme)
    candidate = bundled_dir() / f"{s}.yaml"
    if "/" not in s and "\\" not in s and not s.endswith((".yaml", ".yml")) and candidate.exists():
        return candidate
    p = Path(s)
    if p.exists():
        return p
    known = ", ".join(bundled_ids())
    raise SchemeError(
        f"{s}: no such scheme file and no bundled scheme with that id (bundled: {known})"
    )


@cache
def bibliography() -> dict[str, dict[str, Any]]:
    """The bibliography (``schemes/sources.yaml``): key -> entry."""
    loc = read_yaml(_package_file("sources.yaml"))
    if not isinstance(loc.data, dict):
        raise SchemeError(f"{loc.file}: expected a mapping of source keys")
    for key, entry in loc.data.items():
        if (
            not isinstance(entry, dict)
            or "title" not in entry
            or not ("document" in entry or "url" in entry)
        ):
            raise SchemeError(
                f"{loc.where((key,))}: source '{key}' needs a title and a document or url"
            )
    return loc.data


@cache
def catalogue() -> dict[str, dict[str, Any]]:
    """The shared behaviour catalogue (``schemes/behaviours.yaml``)."""
    loc = read_yaml(_package_file("behaviours.yaml"))
    return dict(loc.data)


def _format_validation(exc: ValidationError, located: Located) -> str:
    lines = []
    for err in exc.errors()[:MAX_ERRORS]:
        loc = tuple(p for p in err["loc"] if p != "[key]")
        # pydantic appends the name of a constrained subtype to the location; drop non-data parts
        path = tuple(p for p in loc if isinstance(p, int) or not str(p).startswith("function-"))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (not part of the scheme format)"
        elif err["type"] == "missing":
            msg = "required field is missing"
        got = err.get("input")
        shown = (
            ""
            if err["type"] in ("missing", "extra_forbidden") or isinstance(got, dict | list)
            else f" (got {got!r})"
        )
        lines.append(f"{located.where(path)}: {dotted(path)}: {msg}{shown}")
    more = len(exc.errors()) - MAX_ERRORS
    if more > 0:
        lines.append(f"... and {more} more errors")
    return "\n".join(lines)


def parse_scheme(located: Located) -> Scheme:
    """Validate parsed YAML against the schema and the semantic rules."""
    if not isinstance(located.data, dict):
        raise SchemeError(
            f"{located.where(())}: (top level): expected a mapping of scheme fields, "
            f"got {type(located.data).__name__}"
        )
    try:
        scheme = Scheme.model_validate(located.data)
    except ValidationError as exc:
        raise SchemeError(_format_validation(exc, located)) from None
    problems = check_semantics(scheme, bibliography(), catalogue())
    if problems:
        raise SchemeError(
            "\n".join(
                f"{located.where(path)}: {dotted(path)}: {msg}"
                for path, msg in problems[:MAX_ERRORS]
            )
        )
    return scheme


def load_scheme(
    scheme: str | Path,
    scenarios: Sequence[str | Path] = (),
    overrides: Mapping[str, str] | None = None,
) -> LoadedScheme:
    """Load and validate a scheme given by bundled id or path, with scenarios laid over it and
    then ``overrides`` (``{"review": "none", "behaviours.speeding.rate": "0.5"}``, see
    :func:`override_patch`)."""
    located = read_yaml(resolve(scheme))
    applied = []
    for name in scenarios:
        sc, sc_loc = load_scenario(name)
        if not isinstance(located.data, dict):
            break
        located = _overlay(located, sc, sc_loc)
        applied.append({"id": sc.id, "path": sc_loc.file, "sha256": sc_loc.sha256})
    if overrides and isinstance(located.data, dict):
        patch = override_patch(located.data, overrides)
        text = yaml.safe_dump(
            {"id": "overrides", "name": "--set", "description": "--set", "patch": patch},
            sort_keys=True,
        )
        sc_loc = read_yaml_text(text, "--set")
        located = _overlay(located, Scenario.model_validate(sc_loc.data), sc_loc)
        applied.append(
            {
                "id": "set",
                "path": "--set",
                "sha256": sc_loc.sha256,
                "overrides": json.dumps(dict(overrides), sort_keys=True),
            }
        )
    return LoadedScheme(
        parse_scheme(located), located.file, located.sha256, located, tuple(applied)
    )


def override_patch(data: Mapping[str, Any], overrides: Mapping[str, str]) -> dict[str, Any]:
    """A merge patch from ``--set key=value`` pairs.

    ``key`` is a dotted path into the scheme. Where it names a section with a ``mode``
    (``review``, ``context``), the value sets the mode; where it names a number, the value
    replaces it and its provenance becomes an assumption saying it was set for this run;
    otherwise the value (read as YAML: numbers, true/false, strings) replaces the field.
    """
    patch: dict[str, Any] = {}
    for key, raw in overrides.items():
        path = [p for p in key.split(".") if p]
        if not path:
            raise SchemeError(f"--set {key}={raw}: empty field name")
        try:
            value = yaml.safe_load(raw) if raw.strip() else raw
        except yaml.YAMLError:
            value = raw
        target: Any = data
        for part in path:
            target = target.get(part) if isinstance(target, Mapping) else None
        if (
            isinstance(target, Mapping)
            and "mode" in target
            or (target is None and path[-1] in ("review", "context"))
        ):
            path, value = [*path, "mode"], value
        elif isinstance(target, Mapping) and "value" in target:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise SchemeError(f"--set {key}={raw}: {key} is a number; got {raw!r}")
            value = {
                "value": value,
                "source": None,
                "assumption": f"set to {value} for this run (--set {key})",
            }
        node = patch
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return patch


def scenario_dir() -> Path:
    return _package_file("scenarios")


def scenario_ids() -> list[str]:
    """Ids of the scenarios shipped with credsim, sorted."""
    return sorted(p.stem for p in scenario_dir().glob("*.yaml"))


def load_scenario(name: str | Path) -> tuple[Scenario, Located]:
    """A scenario by bundled id or path, strictly validated (its patch is checked once laid
    over a scheme)."""
    s = str(name)
    path = scenario_dir() / f"{s}.yaml"
    if "/" in s or s.endswith((".yaml", ".yml")) or not path.exists():
        path = Path(s)
        if not path.exists():
            known = ", ".join(scenario_ids())
            raise SchemeError(
                f"{s}: no such scenario file and no bundled scenario (bundled: {known})"
            )
    located = read_yaml(path)
    if not isinstance(located.data, dict):
        raise SchemeError(
            f"{located.where(())}: (top level): expected a mapping of scenario fields"
        )
    try:
        sc = Scenario.model_validate(located.data)
    except ValidationError as exc:
        raise SchemeError(_format_validation(exc, located)) from None
    bib = bibliography()
    for i, key in enumerate(sc.sources):
        if key not in bib:
            raise SchemeError(
                f"{located.where(('sources', i))}: sources[{i}]: unknown source '{key}'"
            )
    return sc, located


def merge_patch(target: Any, patch: Any, path: tuple = (), touched: list | None = None) -> Any:
    """RFC 7386 JSON merge patch: mappings merge, ``None`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        if touched is not None:
            touched.append(path)
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    if not isinstance(target, dict) and touched is not None:
        touched.append(path)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
            if touched is not None:
                touched.append((*path, key))
        else:
            out[key] = merge_patch(out.get(key), value, (*path, key), touched)
    return out


def _overlay(base: Located, sc: Scenario, sc_loc: Located) -> Located:
    touched: list[tuple] = []
    data = merge_patch(base.data, sc.patch, (), touched)
    merged = Located(data, dict(base.lines), base.file, base.sha256)
    merged.origin = {**base.origin, **{p: sc_loc for p in touched}}
    return merged


def load_scheme_text(text: str, name: str = "<scheme>") -> LoadedScheme:
    """Load a scheme from YAML text (tests, overlays)."""
    located = read_yaml_text(text, name)
    return LoadedScheme(parse_scheme(located), name, located.sha256, located)
