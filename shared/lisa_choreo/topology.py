"""The deployment's one declaration of topics and steps: topics are created from it, and the
graph, the schemas and the AsyncAPI document are generated from it."""

from __future__ import annotations

import importlib

from choreo.step import Step
from choreo.topology import TopicSpec, Topology

# Step name -> module exposing ``step``. The CLI runs them; no service imports another.
STEP_MODULES: dict[str, str] = {
    "toy-square": "services.toy.square",
    "toy-describe": "services.toy.describe",
}

TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec("toy.numbers", partitions=3, description="toy chain input"),
    TopicSpec("toy.squares", partitions=3, description="toy chain middle"),
    TopicSpec("toy.descriptions", partitions=3, description="toy chain output"),
)


def load_step(name: str) -> Step:
    try:
        module = STEP_MODULES[name]
    except KeyError:
        raise SystemExit(
            f"unknown service {name!r}; known: {', '.join(sorted(STEP_MODULES))}"
        ) from None
    return importlib.import_module(module).step


def topology() -> Topology:
    return Topology(topics=TOPICS, steps=tuple(load_step(n) for n in STEP_MODULES))
