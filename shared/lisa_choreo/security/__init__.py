"""Secure mode of the local stack: TLS, SCRAM principals and ACLs derived from the topology.

``acls`` derives the ACL bindings from the services' declarations (pure, no broker);
``credentials`` makes the CA, the broker's certificate and one password per principal;
``acl_admin`` speaks Kafka's CreateAcls/DescribeAcls, which aiokafka's admin client lacks.
"""
