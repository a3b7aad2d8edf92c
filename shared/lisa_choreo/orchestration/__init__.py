"""The orchestrated mode of the side-by-side study: the same steps under Temporal.

``contract`` (what travels), ``workflows`` (deterministic: one per segment, one per catalogue;
where the catalogue's state lives and why), ``activities`` (the services' handlers and the
catalogue's stacking code), ``worker`` (``lisa-choreo orchestrate worker``), ``run``
(``lisa-choreo orchestrate FILE``). It composes the services, so it sits in the tools layer.
"""
