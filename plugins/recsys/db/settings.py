"""Every ``RECSYS_*`` environment variable the platform reads, in one place; a misspelt one is an error.

The settings page (``docs/reference/settings.md``) documents each; ``tests/unit/test_settings.py`` checks that
this list, the variables the code reads and the page agree. :func:`check_environment` runs when the
``recsys`` command and the DAG tasks start: an unknown ``RECSYS_*`` name (``RECSYS_GX_DOCS_KEEP_RUN``) would
otherwise be ignored without a word, so it stops them with the closest valid names. ``RECSYS_TEST_*``
variables belong to the test suite and are left alone.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping

#: the variables, each with what it sets (details and defaults: the settings page)
ENVIRONMENT: dict[str, str] = {
    "RECSYS_PSEUDONYM_KEY": "the pseudonymization key",
    "RECSYS_PGHOST": "dbt's warehouse host",
    "RECSYS_PGPORT": "dbt's warehouse port",
    "RECSYS_PGUSER": "dbt's warehouse user",
    "RECSYS_PGPASSWORD": "dbt's warehouse password",
    "RECSYS_PGDATABASE": "dbt's warehouse database",
    "RECSYS_PG_OS_USER": "the OS user the embedded Postgres runs as under root",
    "RECSYS_LOCAL_DIR": "the folder of local state (.local)",
    "RECSYS_LANDING_DIR": "the landing directory the DAG loads",
    "RECSYS_LANDING_ROOT": "the folder the DAG param landing_dir must lie in",
    "RECSYS_MODEL_CONFIG": "a copy of models.toml",
    "RECSYS_BUSINESS_RULES": "a copy of business_rules.toml",
    "RECSYS_GX_DOCS_DIR": "where the quality gates write data docs",
    "RECSYS_GX_DOCS_KEEP_RUNS": "data docs of how many runs to keep",
    "RECSYS_DBT_EXECUTABLE": "the dbt executable of the DAG's dbt tasks",
    "RECSYS_ALERT_WEBHOOK_URL": "where failed tasks are posted",
    "RECSYS_COLD_START_USERS": "users of the simulated shop of the cold-start test (tests only)",
    "RECSYS_API_TOKEN": "the serving API's bearer token",
    "RECSYS_API_PROFILE_TOKEN": "the serving API's bearer token of the profile endpoint",
    "RECSYS_LANDING_HOST_DIR": "the host folder docker compose mounts as the landing root (compose only)",
}
#: prefixes of variables that are not settings of the platform
IGNORED_PREFIXES = ("RECSYS_TEST_",)


def check_environment(environ: Mapping[str, str] = os.environ) -> None:
    """Raise on a ``RECSYS_*`` variable that is not one of :data:`ENVIRONMENT`.

    Raises
    ------
    ValueError
        Naming the unknown variables, the closest valid names and where the valid names are listed.
    """
    unknown = sorted(
        name
        for name in environ
        if name.startswith("RECSYS_") and name not in ENVIRONMENT and not name.startswith(IGNORED_PREFIXES)
    )
    if unknown:
        hints = [
            f"{name} (did you mean {', '.join(close)}?)"
            if (close := difflib.get_close_matches(name, ENVIRONMENT, n=1, cutoff=0.8))
            else name
            for name in unknown
        ]
        raise ValueError(
            f"unknown environment variable(s): {'; '.join(hints)}. The valid RECSYS_ settings are "
            f"{', '.join(sorted(ENVIRONMENT))} (docs/reference/settings.md)"
        )
