"""Development tools, not product code: the shop simulator, benchmarks and the local run."""
