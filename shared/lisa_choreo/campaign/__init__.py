"""Reprocessing campaigns: the hybrid mode (Temporal orchestrates a compensable campaign on top
of the choreography; see ``workflow.py``)."""
