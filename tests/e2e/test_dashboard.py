"""The Grafana dashboard in packaging/grafana: valid JSON whose every query parses
as PromQL (promtool check rules) and names only metrics tether exports."""
import json
import os
import re
import subprocess
import tempfile
import unittest

from harness import require_program

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DASHBOARD = os.path.join(ROOT, "packaging", "grafana", "tether-dashboard.json")
SPEC_METRICS = {
    "tether_build_info", "tether_downstream_connections_active", "tether_downstream_connections_total",
    "tether_http_requests_total", "tether_http_request_duration_seconds", "tether_http_first_byte_seconds",
    "tether_upstream_connect_seconds", "tether_upstream_connect_errors_total", "tether_upstream_connections",
    "tether_retries_total", "tether_backend_up", "tether_backend_state", "tether_health_checks_total",
    "tether_backend_ejections_total", "tether_websocket_upgrades_total", "tether_websocket_connections_active",
    "tether_websocket_messages_total", "tether_websocket_closes_total", "tether_websocket_duration_seconds",
    "tether_sse_streams_active", "tether_bytes_total", "tether_affinity_lookups_total",
    "tether_affinity_store_up", "tether_affinity_store_seconds", "tether_config_reloads_total",
}


def exprs():
    with open(DASHBOARD) as f:
        dash = json.load(f)
    for p in dash["panels"]:
        for t in p["targets"]:
            yield p["title"], t["expr"]


class Dashboard(unittest.TestCase):
    def test_every_query_parses_as_promql(self):
        promtool = require_program("promtool")
        rules = ["groups:", "  - name: dashboard", "    rules:"]
        for i, (_, e) in enumerate(exprs()):
            e = e.replace("$__rate_interval", "1m").replace("$instance", ".*")
            rules.append("      - record: dashboard:q%d" % i)
            rules.append("        expr: %s" % json.dumps(e))
        with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
            f.write("\n".join(rules) + "\n")
        self.addCleanup(os.unlink, f.name)
        r = subprocess.run([promtool, "check", "rules", f.name], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_queries_name_only_exported_metrics(self):
        names = set()
        for title, e in exprs():
            for m in re.findall(r"\b(tether_[a-z_]+?)(?:_bucket|_sum|_count)?\b(?=[{\[( ]|$)", e):
                names.add(m)
        self.assertTrue(names)
        self.assertTrue(names <= SPEC_METRICS, names - SPEC_METRICS)

    def test_covers_what_operators_watch(self):
        titles = " ".join(t for t, _ in exprs()).lower()
        for word in ("request rate", "error", "duration", "first byte", "websockets open", "backend states",
                     "affinity", "redis"):
            self.assertIn(word, titles)


if __name__ == "__main__":
    unittest.main()
