"""The claim-check store of the lab, behind one function: ``start_object_store(lab, host)``.

``LISA_LAB_STORE=file`` (the default): a folder under ``$LISA_CHOREO_HOME/lab/store``. Every
namespace shares the machine's file system, so this store is reachable from every host whatever
the faults; it stands for the store, not for a store on a host.

``LISA_LAB_STORE=s3``: the S3 server (``lisa_choreo.localstack.objectstore``, SeaweedFS) run in
``host``'s namespace, bound to that host's lab address, its data under the lab's folder; clients
get ``LISA_STORE_URI=s3://...``, the endpoint on that address and the credentials file. A fault
of that host takes the store with it (``lab fault HOST down`` kills every process of the host).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lisa_choreo.lab.net import LabError

if TYPE_CHECKING:
    from lisa_choreo.lab.core import Lab


def start_object_store(lab: Lab, kind: str, host: int) -> dict[str, str]:
    """Start the store ``kind`` on ``host`` (a no-op for ``file``); returns the environment a
    client (service or operator) needs to use it."""
    if kind == "file":
        folder = lab.root / "store"
        folder.mkdir(parents=True, exist_ok=True)
        return {"LISA_STORE_URI": folder.as_uri()}
    if kind == "s3":
        from lisa_choreo.localstack import objectstore

        server = objectstore.ObjectStoreServer(
            port=lab.settings.store_port,
            host=lab.layout.ip(host),
            netns=lab.layout.netns(host),
            state_root=lab.root / "data" / "s3",
        )
        objectstore.up(server)
        return objectstore.service_env(server)
    raise LabError(f"LISA_LAB_STORE={kind!r}: 'file' or 's3'")
