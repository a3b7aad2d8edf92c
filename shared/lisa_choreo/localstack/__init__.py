"""The local stack: Kafka brokers and the Zipkin tracing UI from Maven Central, on loopback."""
