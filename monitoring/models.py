"""Cumulative event counts behind GET /metrics (monitoring.exposition).

Why a table, not process memory: see monitoring.exposition. Each row is one slot of one
series (metric + labels, or one histogram bucket / sum); a series' value is the sum over its
slots and its increments not folded yet (MetricIncrement). Rows are only ever increased, never
decreased: cleaning up old task records leaves the counts alone, so every counter is monotonic
as Prometheus requires.
One series is a gauge instead: claw_running_tasks (the STARTED records per worker, migration 0003).
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


class MetricIncrement(models.Model):
    """A delta of a MetricCounter series, appended by the counting triggers (migration 0005).

    Appended, not upserted: writers then never wait on each other's counter rows. A fold moves
    them into MetricCounter (monitoring.counters.fold_increments); a scrape adds those not folded yet.
    """

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
    value = models.DecimalField(_("value"), max_digits=24, decimal_places=6, default=0)

    class Meta:
        verbose_name = _("metric increment")
        verbose_name_plural = _("metric increments")
        default_permissions = ()

    def __str__(self) -> str:
        return f"{self.metric}{{{self.name},{self.queue},{self.model},{self.label}}} {self.kind} + {self.value}"


class MetricRollup(models.Model):
    """Per-minute and per-hour sums of what the admin dashboard draws (monitoring.rollup).

    Folded from the finished task records and the replies every few seconds and before the
    dashboard reads (monitoring.fold; PostgreSQL triggers kept it until migration 0004), so the
    dashboard reads a few hundred rows for any range instead of every record of the range.
    A row is one figure of one time bin: a count of finished tasks by state, one histogram
    bucket of runtime, queue wait or time to reply, tokens or cost by model, cost by chat user.
    """

    span = models.PositiveIntegerField(_("span (seconds)"), help_text=_("Width of the time bin: 60 or 3600."))
    bin = models.DateTimeField(_("bin"), help_text=_("Start of the time bin (UTC, aligned to the span)."))
    figure = models.CharField(
        _("figure"), max_length=20, help_text=_("finished, runtime, wait, turnaround, tokens, cost or user_cost.")
    )
    name = models.CharField(_("name"), max_length=255, blank=True, default="", help_text=_("Task name or model."))
    label = models.CharField(
        _("label"), max_length=255, blank=True, default="", help_text=_("Final state, or the chat user of user_cost.")
    )
    tenant = models.BigIntegerField(
        _("tenant"), default=0, help_text=_("The chat user's tenant (API user id; 0: made from code) for user_cost.")
    )
    bucket = models.SmallIntegerField(
        _("bucket"), default=0, help_text=_("Histogram bucket of runtime, wait and turnaround (monitoring.rollup).")
    )
    value = models.DecimalField(_("value"), max_digits=24, decimal_places=6, default=0)

    class Meta:
        verbose_name = _("metric rollup")
        verbose_name_plural = _("metric rollups")
        default_permissions = ()
        constraints = [
            models.UniqueConstraint(
                fields=["span", "bin", "figure", "name", "label", "tenant", "bucket"], name="metricrollup_series_bin"
            )
        ]

    def __str__(self) -> str:
        series = f"{self.figure}{{{self.name},{self.label},{self.tenant}}}"
        return f"{series} {self.span}s@{self.bin} b{self.bucket} = {self.value}"


class RollupFold(models.Model):
    """Where the last fold of the rollup ended (monitoring.fold): one row, locked by each fold."""

    ONE = 1

    folded_until = models.DateTimeField(
        _("folded until"), help_text=_("The time of the last fold: the rollup holds what was committed by then.")
    )

    class Meta:
        verbose_name = _("rollup fold")
        verbose_name_plural = _("rollup folds")
        default_permissions = ()

    def __str__(self) -> str:
        return f"folded until {self.folded_until}"
