"""Real mail servers on loopback for tests, benchmarks and local demos (not packaged into Lambda)."""
