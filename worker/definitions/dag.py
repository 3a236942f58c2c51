"""Pure graph helpers over step keys and their ``after`` lists."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def find_cycle(edges: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A cycle as a closed path ``[a, b, ..., a]`` following ``after`` links, or None.

    ``edges`` maps each key to the keys it comes after. Iterative DFS, so a 5,000-step
    chain does not hit the recursion limit.
    """
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(edges, white)
    for start in edges:
        if colour[start] != white:
            continue
        path: list[str] = [start]
        iters = [iter(edges[start])]
        colour[start] = grey
        while iters:
            nxt = next(iters[-1], None)
            if nxt is None:
                colour[path.pop()] = black
                iters.pop()
                continue
            if nxt not in colour:
                continue  # unknown keys are reported elsewhere
            if colour[nxt] == grey:
                return [*path[path.index(nxt) :], nxt]
            if colour[nxt] == white:
                colour[nxt] = grey
                path.append(nxt)
                iters.append(iter(edges[nxt]))
    return None


def topological_order(edges: Mapping[str, Sequence[str]]) -> list[str]:
    """Keys ordered so each comes after everything it depends on (input order kept).

    In waves: every key whose dependencies are all placed, in input order. Linear in
    steps and edges (Kahn's algorithm), so a 10,000-step definition starts fast.
    """
    position = {key: i for i, key in enumerate(edges)}
    waiting = {key: len(set(deps)) for key, deps in edges.items()}
    dependents: dict[str, list[str]] = {key: [] for key in edges}
    for key, deps in edges.items():
        for dep in set(deps):
            if dep not in dependents:
                raise ValueError(f"{key!r} comes after unknown step {dep!r}")
            dependents[dep].append(key)
    wave = [key for key, count in waiting.items() if count == 0]
    order: list[str] = []
    while wave:
        order.extend(wave)
        ready = []
        for key in wave:
            for dependent in dependents[key]:
                waiting[dependent] -= 1
                if waiting[dependent] == 0:
                    ready.append(dependent)
        wave = sorted(ready, key=position.__getitem__)
    if len(order) != len(edges):
        raise ValueError("the graph has a cycle")
    return order
