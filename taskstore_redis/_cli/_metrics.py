"""``worker --metrics``: an OpenTelemetry SDK meter provider set up from the standard variables.

The exporter is the one ``OTEL_METRICS_EXPORTER`` names (default ``otlp``), found
among the ``opentelemetry_metrics_exporter`` entry points the installed
OpenTelemetry packages declare (``console`` comes with ``opentelemetry-sdk``,
``otlp`` with ``opentelemetry-exporter-otlp``), and configured by its own
``OTEL_EXPORTER_*`` variables. It exports every ``OTEL_METRIC_EXPORT_INTERVAL``
ms (default 60000). The resource is ``OTEL_SERVICE_NAME`` (default
``taskstore-redis-worker``) and ``OTEL_RESOURCE_ATTRIBUTES``, with the process's
worker id as ``service.instance.id``.
"""

from __future__ import annotations

import os
from importlib.metadata import entry_points
from typing import Any

from .._runtime import metrics
from ._exit import EXIT_USAGE, CliError

EXPORTER_ENV = "OTEL_METRICS_EXPORTER"
DEFAULT_EXPORTER = "otlp"
SERVICE_NAME = "taskstore-redis-worker"
INSTALL_HINTS = {
    "otlp": "pip install opentelemetry-exporter-otlp",
    "prometheus": "pip install opentelemetry-exporter-prometheus",
}


def exporter_name() -> str:
    """The exporter ``OTEL_METRICS_EXPORTER`` names (its first, if it lists several)."""
    names = os.environ.get(EXPORTER_ENV, "").strip() or DEFAULT_EXPORTER
    return names.split(",")[0].strip()


def exporter_class() -> Any:
    """The exporter's class; CliError (exit 2) when OpenTelemetry or the exporter is missing."""
    try:
        import opentelemetry.sdk.metrics  # noqa: F401
    except ImportError:
        raise CliError(
            "--metrics needs the OpenTelemetry SDK: pip install 'taskstore-redis[otel]' "
            "opentelemetry-sdk",
            EXIT_USAGE,
        ) from None
    if not metrics.ENABLED:  # pragma: no cover  (the SDK brings the API)
        raise CliError("--metrics needs opentelemetry-api", EXIT_USAGE)
    name = exporter_name()
    found = entry_points(group="opentelemetry_metrics_exporter", name=name)
    if not found:
        hint = INSTALL_HINTS.get(name, "install the package that provides it")
        raise CliError(
            f"no OpenTelemetry metrics exporter {name!r} ({EXPORTER_ENV}): {hint}, "
            f"or set {EXPORTER_ENV}=console",
            EXIT_USAGE,
        )
    return next(iter(found)).load()


def start(worker_id: str) -> Any:
    """Set the global meter provider of this process, exporting periodically; return it."""
    from opentelemetry import metrics as otel_metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource

    attributes = {"service.instance.id": worker_id}
    if not os.environ.get("OTEL_SERVICE_NAME"):
        attributes["service.name"] = SERVICE_NAME
    reader = PeriodicExportingMetricReader(exporter_class()())
    provider = MeterProvider(metric_readers=[reader], resource=Resource.create(attributes))
    otel_metrics.set_meter_provider(provider)
    return provider
