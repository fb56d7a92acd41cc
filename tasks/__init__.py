"""Curate's stages as plain, typed functions; `flows/` wraps them as Prefect tasks.

Importing this package first switches off the telemetry and version checks of fastdup and Prefect, because
both phone home by default and Curate must not reach the network during a run. The variables must be set
before either library is imported, which is why this happens at package import time.
"""

import os

__version__ = "0.1.0"

# Forced: privacy is not a preference a stray environment variable should undo.
OFFLINE_ENVIRONMENT = {
    "SENTRY_OPT_OUT": "1",  # fastdup's Sentry telemetry
    "FASTDUP_PRODUCTION": "1",  # fastdup's version check against the package registry
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",  # Prefect server's analytics (DO_NOT_TRACK alone did not stop it)
    "DO_NOT_TRACK": "1",
}
# Defaults the user may override: a cold temporary Prefect server took more than 20 s to start on 2 cores.
PREFECT_DEFAULTS = {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"}

os.environ.update(OFFLINE_ENVIRONMENT)
for _name, _value in PREFECT_DEFAULTS.items():
    os.environ.setdefault(_name, _value)

# Before any thread allocates: see tasks.memory.
from tasks.memory import limit_malloc_arenas  # noqa: E402

limit_malloc_arenas()
