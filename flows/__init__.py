"""Prefect flows. `tasks` is imported first: it switches off fastdup's and Prefect's telemetry before either loads."""

import tasks  # noqa: F401
