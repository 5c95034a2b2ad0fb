"""The engines that run Affinity Propagation's iterations; all compute the same messages bit for bit."""
