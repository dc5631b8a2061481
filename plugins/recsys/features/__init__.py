"""Features the models read: the interaction matrix and its event weights."""
