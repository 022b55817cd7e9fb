"""GET /metrics on -health-addr: the Prometheus text format (checked by `promtool check metrics`)
and OpenMetrics 1.0 (what a real Prometheus server asks for and parses) in every state the
gate reaches (ready, NOT_SERVING, draining, an agent restarted), over HTTP/1.1 and h2c, with a
service name that holds a quote, a backslash and a newline; then a Prometheus server scraping
the health port every second, whose query API must show each transition."""
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import h2.config
import h2.connection
import h2.events
import yaml

from conftest import ROOT
from peers import free_port
from test_health_endpoint import gated
from test_readiness import agent_of, await_line, children, go_server

OPENMETRICS = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
HOSTILE = 'we"ird\\na\nme'
SERVICES = ["db", HOSTILE]


def scrape(port, accept=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/metrics", headers={"Accept": accept} if accept else {})
        r = conn.getresponse()
        return r.status, r.getheader("Content-Type"), r.read().decode()
    finally:
        conn.close()


def scrape_h2(port, accept=None):
    """/metrics over h2c (prior knowledge), as kubelet's HTTP/2 probes reach the port."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        conn.initiate_connection()
        fields = [(":method", "GET"), (":path", "/metrics"), (":scheme", "http"), (":authority", "health")]
        conn.send_headers(1, fields + ([("accept", accept)] if accept else []), end_stream=True)
        s.sendall(conn.data_to_send())
        headers, body = {}, b""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            data = s.recv(65536)
            assert data, "connection closed before the answer ended"
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    headers = dict(event.headers)
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    return int(headers[":status"]), headers["content-type"], body.decode()
            s.sendall(conn.data_to_send())
        raise AssertionError("no answer within 5 s")


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?')


def unescape(value):
    return re.sub(r'\\(.)', lambda m: {"n": "\n", "\\": "\\", '"': '"'}[m.group(1)], value)


def samples(text):
    """{(name, frozenset(labels)): value} of an exposition; the label values unescaped."""
    out = {}
    for line in text.split("\n"):
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        labels = frozenset((k, unescape(v)) for k, v in LABEL.findall(m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def value(text, name, **labels):
    return samples(text).get((name, frozenset(labels.items())))


def promtool_accepts(text):
    out = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout + out.stderr == "", out.stdout + out.stderr


def check_both_formats(port):
    """Both formats, over both transports, in the state the gate is in; the Prometheus text
    through promtool. Returns the Prometheus text."""
    status, kind, text = scrape(port)
    assert (status, kind) == (200, "text/plain; version=0.0.4; charset=utf-8")
    promtool_accepts(text)
    status, kind, om = scrape(port, OPENMETRICS)
    assert (status, kind) == (200, "application/openmetrics-text; version=1.0.0; charset=utf-8")
    assert om.endswith("\n# EOF\n") and om.count("# EOF") == 1
    assert "# TYPE grpc_init_probes counter" in om and "# TYPE grpc_init_probes_total counter" in text
    assert "# TYPE grpc_init_build info" in om and "# TYPE grpc_init_build_info gauge" in text
    assert scrape_h2(port)[:2] == (200, "text/plain; version=0.0.4; charset=utf-8")
    assert scrape_h2(port, OPENMETRICS)[2].endswith("# EOF\n")
    return text


def await_metric(port, name, expected, timeout=10, **labels):
    deadline = time.monotonic() + timeout
    while True:
        text = scrape(port)[2]
        if value(text, name, **labels) == expected:
            return text
        assert time.monotonic() < deadline, f"{name}{labels} never became {expected}:\n{text}"
        time.sleep(0.02)  # a poll interval, not a wait for the event


def control(proc, line):
    proc.stdin.write(line.encode() + b"\n")
    proc.stdin.flush()


def ready_services(bindir):
    services = ",".join(f"{s}=SERVING" for s in SERVICES)
    gate = [arg for s in SERVICES for arg in ("-ready-service", s)] + ["-drain-delay", "60s"]
    return gated(bindir, go_server("-control", "-services", services), *gate, stdin=subprocess.PIPE)


def test_every_state_is_a_valid_exposition_in_both_formats(bindir):
    proc, _, log, port = ready_services(bindir)
    try:
        text = check_both_formats(port)
        assert value(text, "grpc_init_ready") == 1 and value(text, "grpc_init_draining") == 0
        for service in SERVICES:
            assert value(text, "grpc_init_service_serving", service=service) == 1, text
            assert value(text, "grpc_init_service_status", service=service, status="SERVING") == 1
            assert value(text, "grpc_init_service_transitions_total", service=service, status="SERVING") == 1
        agent = agent_of(proc.pid)
        child = [c for c in children(proc.pid) if c != agent][0]
        assert value(text, "grpc_init_child_pid") == child
        assert 0 < value(text, "grpc_init_first_serving_seconds") < 20
        assert value(text, "grpc_init_start_time_seconds") <= value(text, "grpc_init_child_start_time_seconds") <= time.time()
        version = subprocess.run([str(bindir / "grpc-init"), "-version"], capture_output=True, text=True).stdout.split()[1]
        build = [k for k in samples(text) if k[0] == "grpc_init_build_info"]
        assert len(build) == 1 and dict(build[0][1])["version"] == version, build

        control(proc, "SET db NOT_SERVING")
        text = await_metric(port, "grpc_init_service_serving", 0, service="db")
        assert check_both_formats(port)
        assert value(text, "grpc_init_ready") == 0
        assert value(text, "grpc_init_service_status", service="db", status="NOT_SERVING") == 1
        assert value(text, "grpc_init_service_transitions_total", service="db", status="NOT_SERVING") == 1
        assert value(text, "grpc_init_service_serving", service=HOSTILE) == 1

        # Probes are counted by kind and result.
        before = scrape(port)[2]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/readyz")
        assert conn.getresponse().status == 503
        conn.close()
        after = scrape(port)[2]
        key = dict(kind="readyz", result="failure")
        assert value(after, "grpc_init_probes_total", **key) == value(before, "grpc_init_probes_total", **key) + 1

        # An agent killed is counted by the supervisor, and the new agent is told.
        os.kill(agent, signal.SIGKILL)
        await_line(log, "[grpc-init] warning: health agent")
        text = await_metric(port, "grpc_init_agent_restarts_total", 1, cause="crashed")
        assert value(text, "grpc_init_agent_restarts_total", cause="exited") == 0
        check_both_formats(port)

        os.kill(proc.pid, signal.SIGTERM)
        await_line(log, "[grpc-init] draining: ")
        text = await_metric(port, "grpc_init_draining", 1)
        assert value(text, "grpc_init_ready") == 0
        check_both_formats(port)
        # GET and HEAD only.
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("POST", "/metrics")
        assert conn.getresponse().status == 405
        conn.close()
    finally:
        proc.stdin.close()
        proc.stdin = None
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGINT)  # a second signal during the drain goes through at once
        proc.communicate(timeout=15)


def query(api, expression):
    url = f"http://127.0.0.1:{api}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
    with urllib.request.urlopen(url, timeout=5) as r:
        answer = json.load(r)
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def await_query(api, expression, expected, timeout=30):
    """Polls the query API until `expression` has the one value `expected`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = query(api, expression)
        except OSError:
            result = None
        if result and len(result) == 1 and float(result[0]["value"][1]) == expected:
            return result[0]
        assert time.monotonic() < deadline, f"{expression} never became {expected}: {result}"
        time.sleep(0.1)  # a poll interval: the scrape comes every second


def test_a_real_prometheus_scrapes_each_transition(bindir, tmp_path):
    proc, _, log, port = ready_services(bindir)
    api = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "grpc-init", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}],
    }))
    server = subprocess.Popen(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                               f"--web.listen-address=127.0.0.1:{api}"], stdout=subprocess.DEVNULL,
                              stderr=open(tmp_path / "prometheus.log", "w"))
    try:
        await_query(api, 'up{job="grpc-init"}', 1)
        await_query(api, "grpc_init_ready", 1)
        # The hostile name arrives as it was configured: the exposition escaped it, Prometheus unescaped it.
        names = {r["metric"]["service"] for r in query(api, "grpc_init_service_serving == 1")}
        assert names == set(SERVICES), names
        await_query(api, "scrape_samples_scraped", len(samples(scrape(port)[2])))

        control(proc, "SET db NOT_SERVING")
        await_query(api, 'grpc_init_service_serving{service="db"}', 0)
        await_query(api, "grpc_init_ready", 0)
        await_query(api, 'grpc_init_service_transitions_total{service="db",status="NOT_SERVING"}', 1)
        await_query(api, 'grpc_init_service_status{service="db",status="NOT_SERVING"}', 1)

        os.kill(proc.pid, signal.SIGTERM)
        await_line(log, "[grpc-init] draining: ")
        await_query(api, "grpc_init_draining", 1)
        await_query(api, 'up{job="grpc-init"}', 1)
    finally:
        server.terminate()
        server.wait(timeout=15)
        proc.stdin.close()
        proc.stdin = None
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGINT)
        proc.communicate(timeout=15)


def test_the_podmonitor_scrapes_the_deployments_health_port():
    """k8s/monitoring/podmonitor.yaml selects deployment.yaml's pods and keeps the port its
    GRPC_INIT_HEALTH_ADDR names; kubernetes-validate reads it (a custom resource: no schema to
    hold it to beyond the object's frame)."""
    monitor = yaml.safe_load((ROOT / "k8s" / "monitoring" / "podmonitor.yaml").read_text())
    deployment = yaml.safe_load((ROOT / "k8s" / "deployment.yaml").read_text())
    assert (monitor["apiVersion"], monitor["kind"]) == ("monitoring.coreos.com/v1", "PodMonitor")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    health = next(e["value"] for e in container["env"] if e["name"] == "GRPC_INIT_HEALTH_ADDR").rsplit(":", 1)[1]
    assert int(health) in [p["containerPort"] for p in container["ports"]]
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"
    [keep] = endpoint["relabelings"]
    assert (keep["sourceLabels"], keep["action"]) == (["__meta_kubernetes_pod_container_port_number"], "keep")
    assert re.fullmatch(keep["regex"], health) and not any(re.fullmatch(keep["regex"], str(p["containerPort"]))
                                                           for p in container["ports"] if str(p["containerPort"]) != health)
    out = subprocess.run([str(ROOT / ".venv" / "bin" / "kubernetes-validate"), "--strict", str(ROOT / "k8s" / "monitoring" / "podmonitor.yaml")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
