"""For analysts: the run summary and the self-contained HTML report."""
