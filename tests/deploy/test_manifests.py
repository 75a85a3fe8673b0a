"""The Kubernetes and KServe manifests (deploy/k8s), rendered offline with kubectl's kustomize: every
resource valid against Kubernetes' schemas or the vendored CRD schemas, and consistent with the server
(its settings, ports, metrics) and the image (its user)."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
import tomllib

import promql_parser
import pytest
import yaml

from ortserve.metrics import Metrics
from ortserve.ops.guard import check_settings
from ortserve.ops.settings import load_settings
from tests.deploy.manifests import (
    CUSTOM_GROUPS,
    KUBERNETES,
    KUSTOMIZATIONS,
    ROOT,
    container,
    crd_errors,
    errors,
    group,
    image_environment,
    kubernetes_errors,
    one,
    render,
)


@pytest.mark.parametrize("version", KUBERNETES)
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_resource_is_valid(kustomization, version):
    docs = render(kustomization)
    assert docs
    problems = [p for d in docs for p in errors(d, version)]
    assert problems == []


def test_the_checks_catch_mistakes():
    deployment = copy.deepcopy(one(render("base"), "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}  # a misspelt field
    assert kubernetes_errors(deployment, KUBERNETES[0])
    scaled = copy.deepcopy(one(render("overlays/cpu"), "ScaledObject"))
    scaled["spec"]["minReplicas"] = 2  # KEDA calls it minReplicaCount
    assert any("minReplicas" in e for e in crd_errors(scaled))
    scaled = copy.deepcopy(one(render("overlays/cpu"), "ScaledObject"))
    del scaled["spec"]["scaleTargetRef"]["name"]
    assert any("'name' is a required property" in e for e in crd_errors(scaled))
    monitor = copy.deepcopy(one(render("overlays/cpu"), "ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["interval"] = "15 seconds"  # not a Prometheus duration
    assert crd_errors(monitor)
    runtime = copy.deepcopy(one(render("kserve"), "ClusterServingRuntime"))
    runtime["spec"]["protocolVersion"] = ["grpc-v2"]  # it is protocolVersions
    assert crd_errors(runtime)


def test_custom_resources_have_vendored_schemas():
    kinds = {
        (d["apiVersion"], d["kind"]) for k in KUSTOMIZATIONS for d in render(k) if group(d) in CUSTOM_GROUPS
    }
    assert kinds == {
        ("keda.sh/v1alpha1", "ScaledObject"),
        ("monitoring.coreos.com/v1", "ServiceMonitor"),
        ("monitoring.coreos.com/v1", "PrometheusRule"),
        ("serving.kserve.io/v1alpha1", "ClusterServingRuntime"),
        ("serving.kserve.io/v1beta1", "InferenceService"),
    }
    sources = (ROOT / "deploy" / "schemas" / "SOURCES.md").read_text()
    for api, kind in kinds:
        assert f"`{api.split('/')[0]}/{kind.lower()}_{api.split('/')[1]}.json`" in sources


def settings_toml() -> dict:
    return tomllib.loads((ROOT / "deploy" / "k8s" / "base" / "ortserve.toml").read_text())


def test_the_image_environment_is_read():
    env = image_environment()
    assert env["ORTSERVE_HOST"] == "0.0.0.0" and env["ORTSERVE_MODEL_REPOSITORY"] == "/models"
    assert env == image_environment("Dockerfile.gpu")


def test_the_configmap_settings_are_the_servers(tmp_path):
    path = tmp_path / "ortserve.toml"
    path.write_text((ROOT / "deploy" / "k8s" / "base" / "ortserve.toml").read_text())
    deployment = one(render("base"), "Deployment")
    environ = image_environment() | {e["name"]: e["value"] for e in container(deployment)["env"]}
    environ["ORTSERVE_CONFIG"] = str(path)  # mounted at /etc/ortserve/settings in the pod
    s = load_settings([], environ=environ)
    check_settings(s)  # what the server checks first: TLS and an auth file on a non-loopback host
    assert str(s.model_repository) == "/models" and s.host == "0.0.0.0" and not s.insecure
    assert s.tls_cert and s.tls_client_ca and s.auth_file and s.health_port == 8003
    configmap = one(render("base"), "ConfigMap", _name(render("base"), "ortserve-settings"))
    assert configmap["data"]["ortserve.toml"] == path.read_text()


def _name(docs, prefix: str) -> str:
    (name,) = [d["metadata"]["name"] for d in docs if d["metadata"]["name"].startswith(prefix + "-")]
    return name


def test_deployment_ports_probes_and_termination_match_the_settings():
    s = settings_toml()
    deployment = one(render("base"), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    c = container(deployment)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {
        "grpc": s.get("port", 8001),
        "metrics": s.get("metrics_port", 8002),
        "health": s["health_port"],
    }
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["grpc"] == {"port": s["health_port"]}
    # The preStop wait, then the server's own drain (drain_delay, then up to grace_period), must end
    # before the kubelet's SIGKILL.
    prestop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain_delay = s.get("drain_delay", 0)
    assert prestop > 0 and drain_delay == 0, "the preStop hook or drain_delay waits, not both"
    assert pod["terminationGracePeriodSeconds"] >= prestop + drain_delay + s["grace_period"] + 5
    env = {e["name"]: e["value"] for e in c["env"]}
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert env["ORTSERVE_CONFIG"] == f"{mounts['settings']}/ortserve.toml"
    assert s["flags"].startswith(mounts["flags"] + "/")
    assert s["tls_cert"].startswith(mounts["tls"] + "/") and s["auth_file"].startswith(mounts["auth"] + "/")
    assert s["model_repository"] == mounts["models"]


def test_pod_security_matches_the_image_and_the_restricted_profile():
    dockerfile = (ROOT / "Dockerfile.cpu").read_text()
    (user,) = re.findall(r"^USER (\d+):(\d+)$", dockerfile, re.M)
    for overlay in ("overlays/cpu", "overlays/gpu"):
        docs = render(overlay)
        namespace = one(docs, "Namespace")
        assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
        pod = one(docs, "Deployment")["spec"]["template"]["spec"]
        sc = pod["securityContext"]
        assert (str(sc["runAsUser"]), str(sc["runAsGroup"])) == user and sc["runAsNonRoot"] is True
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        csc = container(one(docs, "Deployment"))["securityContext"]
        assert csc["readOnlyRootFilesystem"] is True and csc["allowPrivilegeEscalation"] is False
        assert csc["capabilities"] == {"drop": ["ALL"]}


def test_network_policy_admits_the_inference_and_metrics_ports_only():
    policy = one(render("base"), "NetworkPolicy")
    (rule,) = policy["spec"]["ingress"]
    assert {p["port"] for p in rule["ports"]} == {"grpc", "metrics"} and "from" not in rule
    assert policy["spec"]["egress"] == [] and set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}


def test_service_monitor_scrapes_the_metrics_port():
    docs = render("overlays/cpu")
    monitor = one(docs, "ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    services = [
        d for d in docs if d["kind"] == "Service" and selector.items() <= d["metadata"]["labels"].items()
    ]
    assert [s["metadata"]["name"] for s in services] == ["ortserve"]
    assert "metrics" in {p["name"] for p in services[0]["spec"]["ports"]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics"
    # The auth file guards the metrics port too (no open_metrics): the scrape sends a key from a Secret,
    # the one the README tells you to create.
    s = settings_toml()
    assert s["auth_file"] and not s.get("open_metrics", False)
    authorization = endpoint["authorization"]
    assert authorization["type"] == "Bearer" and authorization["credentials"]["key"] == "key"
    readme = (ROOT / "README.md").read_text()
    assert f"create secret generic {authorization['credentials']['name']} --from-file=key=" in readme


def test_prometheus_resources_come_with_prometheus_only():
    # The HPA overlay is for clusters without the Prometheus Operator: none of its kinds may be in it.
    assert {d["kind"] for d in render("overlays/cpu-hpa")} & {"ServiceMonitor", "PrometheusRule"} == set()
    for overlay in ("overlays/cpu", "overlays/gpu"):
        assert {"ServiceMonitor", "PrometheusRule", "ScaledObject"} <= {d["kind"] for d in render(overlay)}


def test_the_prometheus_rule_is_the_rules_file():
    rule = one(render("overlays/cpu"), "PrometheusRule")
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "ortserve-rules.yml").read_text())
    assert rule["spec"]["groups"] == rules["groups"]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "k8s_alerts.py"), "--check"], capture_output=True, text=True
    )
    assert (proc.returncode, proc.stderr) == (0, "")


def metric_names() -> set[str]:
    names = set()
    for family in Metrics().registry.collect():
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(family.type, [""])
        names |= {family.name + s for s in suffixes}
    return names


@pytest.mark.parametrize("overlay", ["overlays/cpu", "overlays/gpu"])
def test_keda_scales_on_queue_depth_and_request_rate_of_this_namespace(overlay):
    docs = render(overlay)
    deployment = one(docs, "Deployment")
    assert "replicas" not in deployment["spec"]  # the autoscaler's, not the manifest's
    scaled = one(docs, "ScaledObject")
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    queries = {t["name"]: t["metadata"]["query"] for t in scaled["spec"]["triggers"]}
    assert set(queries) == {"queue-depth", "request-rate"}
    assert queries["queue-depth"].startswith("sum(ortserve_queue_depth{")
    known = metric_names()
    for query in queries.values():
        promql_parser.parse(query)  # ValueError if it is not PromQL
        assert set(re.findall(r"ortserve_[a-z_]+", query)) <= known
        assert f'namespace="{deployment["metadata"]["namespace"]}"' in query


def test_hpa_alternative_scales_the_deployment_on_cpu():
    docs = render("overlays/cpu-hpa")
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "ortserve"
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert "replicas" not in one(docs, "Deployment")["spec"]


def test_gpu_overlay_asks_for_a_gpu_on_gpu_nodes():
    deployment = one(render("overlays/gpu"), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    c = container(deployment)
    assert c["image"] == "ortserve:gpu"
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert container(one(render("overlays/cpu"), "Deployment"))["image"] == "ortserve:cpu"


def test_kserve_runtime_serves_grpc_v2_onnx_with_valid_server_arguments():
    docs = render("kserve")
    runtime = one(docs, "ClusterServingRuntime")
    assert runtime["spec"]["protocolVersions"] == ["grpc-v2"]
    assert [f["name"] for f in runtime["spec"]["supportedModelFormats"]] == ["onnx"]
    (c,) = runtime["spec"]["containers"]
    environ = image_environment() | {e["name"]: e["value"] for e in c.get("env", [])}
    s = load_settings(c["args"], environ=environ)
    check_settings(s)
    assert s.insecure  # TLS and authentication are the mesh's under KServe
    assert str(s.model_repository) == "/mnt/models"  # where KServe's storage initializer puts storageUri
    assert {"name": "h2c", "containerPort": s.port, "protocol": "TCP"} in c["ports"]
    isvc = one(docs, "InferenceService")
    model = isvc["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"] and model["protocolVersion"] == "grpc-v2"
    assert model["modelFormat"]["name"] == "onnx" and model["storageUri"].startswith("pvc://")
