"""The serving API: the published run over HTTP, reflecting a shopper's live session (:mod:`recsys.api.app`)."""
