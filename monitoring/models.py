"""Cumulative event counts behind GET /metrics (monitoring.exposition).

Why a table, not process memory: see monitoring.exposition. Each row is one slot of one
series (metric + labels, or one histogram bucket / sum); a series' value is the sum over its
slots. Rows are only ever increased, never decreased: cleaning up old task records leaves the
counts alone, so every counter is monotonic as Prometheus requires.
"""

from django.db import models
from django.utils.translation import gettext_lazy as _


class MetricCounter(models.Model):
    metric = models.CharField(_("metric"), max_length=100, help_text=_("Prometheus metric name."))
    name = models.CharField(_("task name"), max_length=255, blank=True, default="")
    queue = models.CharField(_("queue"), max_length=100, blank=True, default="")
    model = models.CharField(_("model"), max_length=255, blank=True, default="", help_text=_("LLM model."))
    label = models.CharField(
        _("label"), max_length=100, blank=True, default="", help_text=_("The metric's own label, e.g. token type.")
    )
    kind = models.CharField(
        _("kind"), max_length=10, blank=True, default="", help_text=_('"" a counter; "b<n>" a bucket; "sum".')
    )
    slot = models.PositiveSmallIntegerField(_("slot"), help_text=_("Spreads concurrent writers over rows."))
    value = models.DecimalField(_("value"), max_digits=24, decimal_places=6, default=0)

    class Meta:
        verbose_name = _("metric counter")
        verbose_name_plural = _("metric counters")
        default_permissions = ()
        # Granted in the admin (user or group); staff status alone is not enough.
        permissions = [("view_metrics", _("Can view metrics and the monitoring dashboard"))]
        constraints = [
            models.UniqueConstraint(
                fields=["metric", "name", "queue", "model", "label", "kind", "slot"], name="metriccounter_series_slot"
            )
        ]

    def __str__(self) -> str:
        return f"{self.metric}{{{self.name},{self.queue},{self.model},{self.label}}} {self.kind} = {self.value}"
