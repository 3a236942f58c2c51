"""Validate a workflow definition. Pure: no database, no Celery.

Every refusal is a :class:`DefinitionError` whose ``field`` is the path of what is wrong,
e.g. ``steps[2].after[0]``.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import yaml
from pydantic import ValidationError

from worker.definitions.dag import find_cycle
from worker.definitions.spec import WorkflowSpec
from worker.errors import DefinitionError, UnregisteredStep
from worker.serialization import key_segment, loads_unique


def parse_spec(source: str | bytes | dict[str, Any] | WorkflowSpec) -> WorkflowSpec:
    """Build a spec from a JSON or YAML document, a dict, or a spec; check its shape."""
    if isinstance(source, WorkflowSpec):
        return source
    data: Any = source
    try:
        if isinstance(source, str | bytes):
            data = _load(source)
        if not isinstance(data, dict):
            raise DefinitionError("definition", "must be a mapping with name and steps")
        return WorkflowSpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise DefinitionError(
            _path(first["loc"]), first["msg"].removeprefix("Value error, ")
        ) from None
    except RecursionError:
        # json, yaml and pydantic recurse per level; a hostile document is refused whole.
        raise DefinitionError("definition", "is nested too deeply") from None


def _load(source: str | bytes) -> Any:
    """The document as Python data: JSON, else YAML."""
    if isinstance(source, bytes):
        try:
            source = source.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DefinitionError(
                "definition", f"is not UTF-8 text (byte {exc.start} is invalid)"
            ) from None
    try:
        return loads_unique(source, "definition")
    except ValueError:
        try:
            return yaml.load(source, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
        except yaml.YAMLError as exc:
            problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DefinitionError("definition", f"is neither JSON nor YAML: {problem}") from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a mapping that names a key twice: a repeated
    ``retry:`` or ``after:`` would otherwise replace the first without a word."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # ``<<: *base``: the keys written beside it override the merged ones
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str | int | float | bool) and key in seen:
                line = key_node.start_mark.line + 1
                raise DefinitionError(
                    "definition", f"the key {key!r} appears twice in one mapping (line {line})"
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def validate_spec(spec: WorkflowSpec, registered: Collection[str] | None = None) -> None:
    """Check the DAG: unique keys, known ``after`` keys, no cycle, registered step names.

    ``registered`` is the set of step names this process knows; None skips that check
    (for a process that has loaded no step modules).
    """
    index: dict[str, int] = {}
    for i, step in enumerate(spec.steps):
        if step.key in index:
            raise DefinitionError(f"steps[{i}].key", f"duplicate key {step.key!r}")
        index[step.key] = i
    for i, step in enumerate(spec.steps):
        for j, dep in enumerate(step.after):
            if dep == step.key:
                raise DefinitionError(f"steps[{i}].after[{j}]", "a step cannot come after itself")
            if dep not in index:
                raise DefinitionError(f"steps[{i}].after[{j}]", f"unknown step key {dep!r}")
        if len(set(step.after)) != len(step.after):
            raise DefinitionError(f"steps[{i}].after", "lists the same step twice")
        if step.map is not None and step.map.upstream not in step.after:
            raise DefinitionError(
                f"steps[{i}].map.over",
                f"names step {step.map.upstream!r}, which must be in this step's after list",
            )
    cycle = find_cycle({step.key: step.after for step in spec.steps})
    if cycle:
        raise DefinitionError("steps", "cycle " + " -> ".join(cycle))
    if registered is not None:
        for i, step in enumerate(spec.steps):
            if step.runs not in registered:
                raise UnregisteredStep(
                    f"steps[{i}].{'task' if step.map is None else 'map.task'}",
                    f"no step function is registered as {step.runs!r} "
                    "(is its module in CAIRN_STEP_MODULES?)",
                )


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            segment = key_segment(str(part))
            out += segment if out or segment.startswith("[") else segment[1:]
    return out or "definition"
