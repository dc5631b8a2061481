"""The recommenders: baselines, collaborative filtering, matrix factorization, the neural ranker."""
