"""deploy/k8s: the manifests are valid Kubernetes objects (checked offline against the
schemas of a pinned Kubernetes version) and agree with the service and with each other."""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

import folder_paths
from tools import predict
from web.config import DEFAULT_CONFIG

K8S_DIR = folder_paths.base_path() / "deploy" / "k8s"
KUBERNETES_VERSION = "1.33.0"  # the oldest version the manifests are meant for
MANIFESTS = sorted(K8S_DIR.rglob("*.yaml"))
GUNICORN_CONF = (folder_paths.base_path() / "gunicorn.conf.py").read_text()
METRICS_KEY = "test-key-4f1c"


def documents() -> list[dict]:
    found = []
    for path in MANIFESTS:
        found.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return found


def the(kind: str) -> dict:
    (found,) = [doc for doc in documents() if doc["kind"] == kind]
    return found


def container(workload: dict) -> dict:
    (found,) = workload["spec"]["template"]["spec"]["containers"]
    return found


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda path: str(path.relative_to(K8S_DIR)))
def test_each_manifest_is_valid_for_the_pinned_kubernetes(path):
    for document in yaml.safe_load_all(path.read_text()):
        # strict: a misspelt or misplaced field is an error, not ignored
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_an_invalid_manifest_is_caught():
    broken = yaml.safe_load((K8S_DIR / "deployment.yaml").read_text())
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "x"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_every_object_the_service_needs_is_there():
    kinds = sorted(doc["kind"] for doc in documents())
    assert kinds == ["Deployment", "HorizontalPodAutoscaler", "Job", "PersistentVolumeClaim",
                     "PodDisruptionBudget", "Service"]
    assert the("HorizontalPodAutoscaler")["apiVersion"] == "autoscaling/v2"


def test_selectors_and_targets_meet():
    deployment = the("Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    for selector in (deployment["spec"]["selector"]["matchLabels"],
                     the("Service")["spec"]["selector"],
                     the("PodDisruptionBudget")["spec"]["selector"]["matchLabels"]):
        assert selector.items() <= pod_labels.items()
    target = the("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert the("HorizontalPodAutoscaler")["spec"]["minReplicas"] >= 2  # the PDB can let one go
    ports = {port["name"]: port["containerPort"] for port in container(deployment)["ports"]}
    assert the("Service")["spec"]["ports"][0]["targetPort"] in ports


def test_probes_and_scrape_annotations_point_at_the_services_routes(app):
    deployment = the("Deployment")
    server = container(deployment)
    routes = {rule.rule for rule in app.url_map.iter_rules()}
    assert server["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert server["livenessProbe"]["httpGet"]["path"] == "/healthz"
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert {"/readyz", "/healthz", annotations["prometheus.io/path"]} <= routes
    bind = {env["name"]: env.get("value") for env in server["env"]}["DIGITS_BIND"]
    assert bind.rsplit(":", 1)[1] == annotations["prometheus.io/port"]
    assert int(annotations["prometheus.io/port"]) == server["ports"][0]["containerPort"]


def test_every_setting_is_one_the_service_reads():
    for env in container(the("Deployment"))["env"]:
        name = env["name"].removeprefix("DIGITS_")
        assert name in DEFAULT_CONFIG or f'"{env["name"]}"' in GUNICORN_CONF, env["name"]


def test_the_api_key_comes_from_a_secret_and_the_scraper_may_read_metrics(make_app):
    """The Deployment's settings, the Secret's key filled in, behave as its comments say."""
    settings = {}
    for env in container(the("Deployment"))["env"]:
        name = env["name"].removeprefix("DIGITS_")
        if "valueFrom" in env:
            assert env["valueFrom"]["secretKeyRef"] == {"name": "digits-api-key",
                                                        "key": "api-key"}
            settings[name] = METRICS_KEY
        elif name in DEFAULT_CONFIG:
            settings[name] = type(DEFAULT_CONFIG[name])(env["value"])
    assert settings["API_KEY"] == METRICS_KEY
    client = make_app(**settings).test_client()
    elsewhere = {"REMOTE_ADDR": "10.1.2.3"}  # the scraper is another pod
    authorised = {"Authorization": f"Bearer {METRICS_KEY}"}
    assert client.get("/metrics", environ_base=elsewhere).status_code == 401
    assert client.get("/metrics", environ_base=elsewhere, headers=authorised).status_code == 200
    assert client.get("/readyz", environ_base=elsewhere).status_code == 200  # probes need no key


def test_pods_stop_after_requests_in_flight_are_answered():
    spec = the("Deployment")["spec"]["template"]["spec"]
    graceful = int(re.search(r'"DIGITS_GRACEFUL_TIMEOUT", "(\d+)"', GUNICORN_CONF).group(1))
    pause = int(spec["containers"][0]["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert spec["terminationGracePeriodSeconds"] >= graceful + pause


def test_the_indexed_job_runs_one_shard_per_index_over_the_shared_volume():
    job = the("Job")["spec"]
    assert job["completionMode"] == "Indexed"
    assert job["completions"] == job["parallelism"]
    tool = container(the("Job"))
    assert tool["command"] == ["python", "-m", "tools.predict"]
    shard = {env["name"]: env for env in tool["env"]}["SHARD"]
    assert shard["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.annotations['batch.kubernetes.io/job-completion-index']")
    for index in range(job["completions"]):
        args = [arg.replace("$(SHARD)", str(index)) for arg in tool["args"]]
        parsed = predict.parse_args(args)
        assert parsed.shard == (index, job["completions"])
        assert Path(parsed.out).name == f"predictions-{index}.jsonl"
    volumes = {v["name"]: v for v in the("Job")["spec"]["template"]["spec"]["volumes"]}
    claim = volumes["data"]["persistentVolumeClaim"]["claimName"]
    assert claim == the("PersistentVolumeClaim")["metadata"]["name"]
    assert "ReadWriteMany" in the("PersistentVolumeClaim")["spec"]["accessModes"]


def test_containers_run_as_the_images_non_root_user():
    containerfile = (folder_paths.base_path() / "deploy" / "Containerfile").read_text()
    uid = re.search(r"useradd .*--uid (\d+)", containerfile).group(1)
    for kind in ("Deployment", "Job"):
        pod = the(kind)["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert str(pod["securityContext"]["runAsUser"]) == uid
        assert container(the(kind))["securityContext"]["allowPrivilegeEscalation"] is False
