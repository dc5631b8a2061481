"""Quality gates (Great Expectations suites over raw and published tables) and erasure."""
