"""The claim-check store of the lab, behind one function: ``start_object_store(lab, host)``.

``LISA_LAB_STORE=file`` (the default): a folder under ``$LISA_CHOREO_HOME/lab/store``. Every
namespace shares the machine's file system, so this store is reachable from every host whatever
the faults; it stands for the store, not for a store on a host.

``LISA_LAB_STORE=s3``: the S3 server (``lisa_choreo.localstack.objectstore``, SeaweedFS) run in
``host``'s namespace, bound to that host's lab address; clients get ``LISA_STORE_URI=s3://...``
and the endpoint. That module is not on this branch yet: wiring it is this one function.
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
        # To wire (the S3 server's module): start it with the command prefix
        # ["ip", "netns", "exec", lab.layout.netns(host)], bound to lab.layout.ip(host), its data
        # under lab.root / "data" / "s3", and return LISA_STORE_URI=s3://bucket/prefix with the
        # endpoint (http://<that ip>:<port>) and credential variables; `lab down` kills it with
        # the host's other processes.
        raise LabError("LISA_LAB_STORE=s3 needs lisa_choreo.localstack.objectstore (not here yet)")
    raise LabError(f"LISA_LAB_STORE={kind!r}: 'file' or 's3'")
