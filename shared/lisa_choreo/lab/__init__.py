"""The lab: several simulated servers on one machine, for deployment and fault tests.

``net`` makes the network (namespaces on a bridge with no uplink), ``core`` runs brokers,
store and services on it and injects faults, ``store`` is where the claim-check store is chosen.
"""
