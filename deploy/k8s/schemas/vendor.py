"""Re-vendor the JSON schemas kubeconform checks the chart against (run by hand, offline after).

Core kinds: from the PyPI package kubernetes-validate (Kubernetes' OpenAPI as JSON schemas,
Apache-2.0), whose files point their ``$ref`` at ``/api/_definitions.json``, a path kubeconform
cannot resolve: each kind is written standalone here, with the definitions it reaches copied into
its own ``$defs``. CRDs: from the datreeio/CRDs-catalog repository (MIT; the schemas are generated
from the Strimzi and KEDA CRDs, Apache-2.0), copied as they are.

    python deploy/k8s/schemas/vendor.py SCHEMA_DIR CRDS_CHECKOUT

SCHEMA_DIR: kubernetes-validate's ``kubernetes-json-schema/v<K8S>-local-strict`` folder;
CRDS_CHECKOUT: a checkout of CRDs-catalog.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).parent
CORE = ("deployment-apps-v1", "configmap-v1", "persistentvolumeclaim-v1")
CRDS = (
    "kafka.strimzi.io/kafkatopic_v1beta2",
    "kafka.strimzi.io/kafkauser_v1beta2",
    "keda.sh/scaledobject_v1alpha1",
    "keda.sh/triggerauthentication_v1alpha1",
)
PREFIX = "/api/_definitions.json#/$defs/"
LOCAL = "#/$defs/"


def standalone(schema: dict, definitions: dict) -> dict:
    """``schema`` with every reachable definition inlined under ``$defs``, refs made local."""
    needed: dict[str, dict] = {}

    def walk(node):
        if isinstance(node, dict):
            ref = node.get("$ref")
            # The kinds' files point at PREFIX, the definitions at each other with "#/$defs/".
            if isinstance(ref, str) and ref.startswith((PREFIX, LOCAL)):
                name = ref.rsplit("/", 1)[1]
                node["$ref"] = LOCAL + name
                if name not in needed:
                    needed[name] = json.loads(json.dumps(definitions[name]))
                    walk(needed[name])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    out = json.loads(json.dumps(schema))
    walk(out)
    out["$defs"] = dict(sorted(needed.items()))
    return out


def main(schema_dir: Path, crds: Path) -> None:
    definitions = json.loads((schema_dir / "_definitions.json").read_text())["$defs"]
    (HERE / "core").mkdir(exist_ok=True)
    for kind in CORE:
        schema = json.loads((schema_dir / f"{kind}.json").read_text())
        text = json.dumps(standalone(schema, definitions), indent=1, sort_keys=True)
        (HERE / "core" / f"{kind}.json").write_text(text + "\n")
    for name in CRDS:
        target = HERE / "crds" / f"{name}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(crds / f"{name}.json", target)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
