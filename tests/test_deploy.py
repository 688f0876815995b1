"""The deployment files, validated as far as this machine can: no Docker engine and no cluster here.

`docker-compose config` (Debian's docker-compose 1.29) parses, interpolates and schema-checks the compose
file without an engine; the Kubernetes manifests are parsed and checked for the fields that matter in
production (pinned images, probes, resources, no secrets in plain text, selectors that match).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
K8S = ROOT / "deploy" / "k8s"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY|CREDENTIAL", re.IGNORECASE)

needs_compose = pytest.mark.skipif(
    shutil.which("docker-compose") is None,
    reason="docker-compose is not installed (scripts/install-services.sh installs it; `make test` runs that)",
)


def compose_config(compose_file: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GADER_")}
    return subprocess.run(
        ["docker-compose", "--project-directory", str(ROOT), "-f", str(compose_file), "config"],
        capture_output=True,
        text=True,
        env={**clean, **env},
        timeout=60,
    )


@needs_compose
def test_compose_file_is_valid_and_has_the_production_shape():
    result = compose_config(COMPOSE, {"GADER_REDIS_PASSWORD": "s3cret-from-env"})
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    services = config["services"]
    assert set(services) >= {"api", "triton", "redis", "prometheus"}

    api = services["api"]
    assert api["environment"]["GADER_INFERENCE"] == "triton://triton:8001"
    assert api["environment"]["GADER_STORE"] == "redis://:s3cret-from-env@redis:6379/0"
    assert "healthcheck" in api

    triton = services["triton"]
    assert any(str(v).endswith("/model_repository:/models:ro") for v in triton["volumes"]), triton["volumes"]
    devices = triton["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"] and devices[0]["driver"] == "nvidia"
    assert "healthcheck" in triton

    redis = services["redis"]
    command = " ".join(redis["command"]) if isinstance(redis["command"], list) else redis["command"]
    assert "--appendonly yes" in command and "--requirepass s3cret-from-env" in command
    assert "healthcheck" in redis

    for name, service in services.items():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: image {image!r} is not pinned"


@needs_compose
def test_compose_refuses_to_start_without_a_redis_password():
    """No default secrets: without GADER_REDIS_PASSWORD the file does not even interpolate."""
    result = compose_config(COMPOSE, {})
    assert result.returncode != 0
    assert "GADER_REDIS_PASSWORD" in result.stderr


@needs_compose
@pytest.mark.parametrize(
    "mutation",
    [
        ("    image: gader-api:0.1.0\n", "    image: gader-api:0.1.0\n    replicass: 2\n", "replicass"),
        ('      - "8000:8000"\n', "      - {published: many}\n", "not a valid integer"),
        ("  redis:\n    image:", "  redis:\n   image:", "mapping values are not allowed"),
    ],
    ids=["unknown-key", "bad-port", "broken-yaml"],
)
def test_compose_config_rejects_an_invalid_file(tmp_path, mutation):
    """The validation above can fail: the same command rejects a broken copy of the file."""
    original, broken, complaint = mutation
    text = COMPOSE.read_text()
    assert original in text
    bad = tmp_path / "docker-compose.yml"
    bad.write_text(text.replace(original, broken, 1))
    result = compose_config(bad, {"GADER_REDIS_PASSWORD": "x"})
    assert result.returncode != 0, result.stdout
    assert complaint in result.stderr


def load_manifests() -> list[dict]:
    documents = []
    for path in sorted(K8S.glob("*.yaml")):
        documents += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return documents


def workloads(documents: list[dict]) -> list[dict]:
    return [d for d in documents if d["kind"] in {"Deployment", "StatefulSet"}]


def containers(workload: dict) -> list[dict]:
    return workload["spec"]["template"]["spec"]["containers"]


def test_manifests_parse_and_declare_every_tier():
    documents = load_manifests()
    kinds = {(d["kind"], d["metadata"]["name"]) for d in documents}
    assert {("Deployment", "api"), ("Deployment", "triton"), ("StatefulSet", "redis")} <= kinds
    assert {("Service", "api"), ("Service", "triton"), ("Service", "redis")} <= kinds
    assert ("HorizontalPodAutoscaler", "api") in kinds
    assert all(d["metadata"].get("namespace") == "gader" for d in documents if d["kind"] != "Namespace")


def test_every_container_is_pinned_probed_and_bounded():
    for workload in workloads(load_manifests()):
        for container in containers(workload):
            where = f"{workload['metadata']['name']}/{container['name']}"
            image = container["image"]
            assert re.fullmatch(r"[\w./-]+(:[\w.-]+|@sha256:[0-9a-f]{64})", image), f"{where}: unpinned {image}"
            assert not image.endswith(":latest"), where
            assert "readinessProbe" in container and "livenessProbe" in container, where
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]) and {"cpu", "memory"} <= set(resources["limits"])


def test_no_secret_is_written_in_plain_text():
    documents = load_manifests()
    assert not [d for d in documents if d["kind"] == "Secret"], "Secrets are created out of band, never committed"
    for workload in workloads(documents):
        for container in containers(workload):
            for var in container.get("env", []):
                if SECRET_NAME.search(var["name"]):
                    assert "valueFrom" in var and "secretKeyRef" in var["valueFrom"], var["name"]
                value = var.get("value", "")
                # A connection URL may carry a password only by reference to a secret-backed variable.
                assert not re.search(r"://[^@/]*:[^@$/(][^@/]*@", value), f"{var['name']} embeds a credential"
    for config_map in (d for d in documents if d["kind"] == "ConfigMap"):
        for key in config_map["data"]:
            assert not SECRET_NAME.search(key), f"ConfigMap key {key} looks like a secret"


def test_services_and_autoscaler_point_at_real_workloads():
    documents = load_manifests()
    labels = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"] for d in workloads(documents)}
    for service in (d for d in documents if d["kind"] == "Service"):
        selector = service["spec"]["selector"]
        assert any(selector.items() <= pod.items() for pod in labels.values()), service["metadata"]["name"]
    hpa = next(d for d in documents if d["kind"] == "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] in labels
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]


def test_triton_gets_a_gpu_and_the_api_finds_triton_and_redis():
    documents = load_manifests()
    triton = next(d for d in workloads(documents) if d["metadata"]["name"] == "triton")
    (container,) = containers(triton)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    config = next(d for d in documents if d["kind"] == "ConfigMap")["data"]
    assert config["GADER_INFERENCE"] == "triton://triton:8001"
    api = next(d for d in workloads(documents) if d["metadata"]["name"] == "api")
    env = {v["name"]: v for v in containers(api)[0]["env"]}
    assert env["GADER_STORE"]["value"] == "redis://:$(REDIS_PASSWORD)@redis:6379/0"
    assert api["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


@pytest.mark.parametrize("dockerfile", ["deploy/Dockerfile", "deploy/triton/Dockerfile"])
def test_dockerfiles_pin_their_bases_and_do_not_run_as_root(dockerfile):
    text = (ROOT / dockerfile).read_text()
    bases = re.findall(r"^FROM\s+(\S+)", text, flags=re.MULTILINE)
    assert bases and all(":" in b and not b.endswith(":latest") for b in bases), bases
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.MULTILINE)
    assert users and users[-1] not in {"root", "0"}


def test_api_image_is_multi_stage():
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM\s", text, flags=re.MULTILINE)) >= 2
    assert "COPY --from=build" in text


def test_prometheus_scrapes_both_tiers():
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = {t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    assert {"api:8000", "triton:8002"} <= targets
