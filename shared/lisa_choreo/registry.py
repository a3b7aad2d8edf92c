"""The deployment: which module runs each service, and the topology built from their declarations.

Topics are created from it, and the graph, the schemas and the AsyncAPI document are generated
from it. Every service has one entry module, ``lisa_services.<name>.service``, exposing ``step``
(its declaration) and ``main()`` (its process). No service imports another; only the tools load
them, by name.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from choreo.step import Step
from choreo.topology import Topology
from lisa_pipeline.stages import PIPELINE
from lisa_pipeline.topics import TOPICS


def entry_module(service: str) -> str:
    return f"lisa_services.{service.replace('-', '_')}.service"


SERVICE_MODULES: dict[str, str] = {name: entry_module(name) for name in PIPELINE}


def load_service(name: str) -> ModuleType:
    try:
        module = SERVICE_MODULES[name]
    except KeyError:
        known = ", ".join(sorted(SERVICE_MODULES))
        raise SystemExit(f"unknown service {name!r}; known: {known}") from None
    return importlib.import_module(module)


def load_step(name: str) -> Step:
    return load_service(name).step


def topology() -> Topology:
    return Topology(topics=TOPICS, steps=tuple(load_step(n) for n in SERVICE_MODULES))
