"""The shop's use cases beyond the home page: search re-ranking, promotion targeting, cold start."""
