"""Kafka and Zipkin launch files (Maven poms, configuration), read with importlib.resources."""
