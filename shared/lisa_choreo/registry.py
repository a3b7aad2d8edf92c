"""The deployment: which module runs each service, and the topology built from their declarations.

Topics are created from it, and the graph, the schemas and the AsyncAPI document are generated
from it. Every service has one entry module, ``lisa_services.<name>.service``, exposing ``step``
(its declaration) and ``main()`` (its process). No service imports another; only the tools load
them, by name.

Two kinds of service: the pipeline's stages (``lisa_pipeline.stages.PIPELINE``) and the
per-source steps after the catalogue (``SOURCE_STEPS``), which are the topology's steps, and
observers (``OBSERVERS``), which read the pipeline's topics without being
on the processing path (the flow monitor). An observer is not a step of the topology (it
dead-letters nothing, so no dead-letter topic follows from what it reads, and it is no hop of the
choreography graph); the deployment carries it beside the steps (``Deployment.observers``) for
the ACLs (``lisa_choreo.security.acls``) and ``lisa-choreo run``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from choreo.step import Step
from choreo.topology import Topology
from lisa_pipeline.stages import PIPELINE, SOURCE_STEPS
from lisa_pipeline.topics import TOPICS

OBSERVERS: tuple[str, ...] = ("flows",)
"""Read-only services beside the pipeline: they consume its topics and never produce to them."""


def entry_module(service: str) -> str:
    return f"lisa_services.{service.replace('-', '_')}.service"


SERVICE_MODULES: dict[str, str] = {name: entry_module(name) for name in (*PIPELINE, *SOURCE_STEPS)}
OBSERVER_MODULES: dict[str, str] = {name: entry_module(name) for name in OBSERVERS}


@dataclass(frozen=True)
class Deployment(Topology):
    """The topology's topics and steps, and the observers reading them."""

    observers: tuple[Step, ...] = ()
    clients: tuple[Step, ...] = ()
    """Tools that act on the pipeline from outside it, as an operator would (the campaign
    worker): declared so that the schemas document what they read and write."""

    def __post_init__(self) -> None:
        super().__post_init__()
        names = {t.name for t in self.topics}
        for step in self.clients:
            for topic in [c.topic for c in step.consumes] + [p.topic for p in step.produces]:
                if topic not in names:
                    raise ValueError(f"client {step.name!r} uses undeclared topic {topic!r}")
        for step in self.observers:
            for topic in [c.topic for c in step.consumes] + [p.topic for p in step.produces]:
                if topic not in names:
                    raise ValueError(f"observer {step.name!r} uses undeclared topic {topic!r}")
            produced = {p.topic for s in self.steps for p in s.produces}
            if written := produced & {p.topic for p in step.produces}:
                raise ValueError(f"observer {step.name!r} writes pipeline topics {written}")


def load_service(name: str) -> ModuleType:
    modules = {**SERVICE_MODULES, **OBSERVER_MODULES}
    try:
        module = modules[name]
    except KeyError:
        known = ", ".join(sorted(modules))
        raise SystemExit(f"unknown service {name!r}; known: {known}") from None
    return importlib.import_module(module)


def load_step(name: str) -> Step:
    return load_service(name).step


def topology() -> Deployment:
    return Deployment(
        topics=TOPICS,
        steps=tuple(load_step(n) for n in SERVICE_MODULES),
        observers=tuple(load_step(n) for n in OBSERVER_MODULES),
        clients=(campaign_declaration(),),
    )


def campaign_declaration() -> Step:
    from lisa_choreo.campaign.declaration import step

    return step
