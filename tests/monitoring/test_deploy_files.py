"""deploy/monitoring/: the Grafana dashboard and the Prometheus alert rules, checked against a real scrape.

Every PromQL expression is parsed (promql-parser, the Rust parser of the Prometheus language) and
each metric it names must be one that GET /metrics of this system exposes.
"""

import json
from pathlib import Path

import promql_parser
import pytest
import yaml
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "monitoring"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "claw-ai.json"
ALERTS = DEPLOY / "alerts.yml"
# Grafana's own variables, replaced by a duration before a query is sent.
GRAFANA_DURATIONS = ("$__rate_interval", "$__interval", "$__range")
# What each metric type exposes as series (prometheus-client's text format).
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}

pytestmark = pytest.mark.django_db


def exposed_series(metrics_token: str) -> set[str]:
    """Every series name a real scrape of GET /metrics exposes (with or without samples yet)."""
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {metrics_token}")
    assert response.status_code == 200, response.content
    names = set()
    for family in text_string_to_metric_families(response.content.decode()):
        expected = {family.name + suffix for suffix in SUFFIXES[family.type]}
        assert {sample.name for sample in family.samples} <= expected, family.name
        names |= expected
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (parsing fails on a malformed expression)."""
    for variable in GRAFANA_DURATIONS:
        expr = expr.replace(variable, "5m")
    names: set[str] = set()

    def visit(node):
        if isinstance(node, promql_parser.VectorSelector):
            assert node.name, f"a selector without a metric name in {expr!r}"
            names.add(node.name)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def dashboard_exprs() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]


def alert_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def test_the_dashboard_and_the_alerts_use_only_series_the_scrape_exposes(metrics_token):
    # given
    exposed = exposed_series(metrics_token)
    assert {"celery_task_runtime_bucket", "celery_queue_length", "claw_llm_cost_usd_total"} <= exposed
    # when
    exprs = dashboard_exprs() + [(rule["alert"], rule["expr"]) for rule in alert_rules()]
    # then
    used = set()
    for title, expr in exprs:
        names = metric_names(expr)
        assert names, title
        assert names <= exposed, f"{title}: {sorted(names - exposed)} is not exposed by GET /metrics"
        used |= names
    # and the charts cover every family: tasks, histograms, queues, workers, LLM usage, the scrape
    families = {
        name.removesuffix(suffix) for name in used for suffix in ("_total", "_bucket", "_sum") if name.endswith(suffix)
    }
    families |= used
    for family in (
        "celery_task_succeeded",
        "celery_task_runtime",
        "claw_task_queue_wait_seconds",
        "celery_queue_length",
        "claw_queue_oldest_message_age_seconds",
        "celery_worker_up",
        "celery_worker_tasks_active",
        "gen_ai_client_token_usage",
        "gen_ai_client_operation_duration_seconds",
        "gen_ai_server_time_to_first_token_seconds",
        "claw_llm_cost_usd",
        "claw_llm_rate_limited",
    ):
        assert family in families, family


def test_the_dashboard_is_grafana_json_on_the_provisioned_datasource():
    # given
    dashboard = json.loads(DASHBOARD.read_text())
    provisioned = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    (datasource,) = provisioned["datasources"]
    # then
    assert dashboard["uid"]
    assert dashboard["title"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)) >= 12
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": datasource["uid"]}, panel["title"]
        assert panel["fieldConfig"]["defaults"]["unit"], f"{panel['title']} has no unit"
        assert panel["targets"]
        assert all(target["expr"] and target["refId"] for target in panel["targets"])
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"])


def test_the_alert_rules_are_the_five_asked_for_and_well_formed():
    # given
    rules = alert_rules()
    # then
    assert {rule["alert"] for rule in rules} == {
        "ClawNoWorkerUp",
        "ClawQueueOldestMessageTooOld",
        "ClawTaskFailureRateHigh",
        "ClawProviderRateLimited",
        "ClawLLMCostPerHourHigh",
    }
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}
        assert rule["annotations"]["summary"]
        if "for" in rule:
            promql_parser.parse_duration(rule["for"])
        # an alert fires on a comparison: its expression must be a filter, not a plain value
        assert isinstance(promql_parser.parse(rule["expr"]), promql_parser.BinaryExpr), rule["alert"]
