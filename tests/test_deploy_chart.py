"""The Helm chart (deploy/helm/darkroom), rendered by helm and read back: it lints strictly, its
manifests are valid for Kubernetes 1.30 to 1.33, and they say what the chart promises: a
Deployment per worker pool with its GPUs, nodes and drain, KEDA on the queue of its models, the
migrations before the rollout, and no secret anywhere but in the operator's Secret."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from darkroom.core.catalog import Catalog
from tests.conftest import ON_POSTGRES, ServerFactory
from tests.deploy_tools import CHART, helm, missing

GPU_VALUES = CHART / "examples" / "values-gpu.yaml"
KUBERNETES = ("1.30.0", "1.31.0", "1.32.0", "1.33.0")
# Custom resources, whose schemas kubernetes-validate does not have (KEDA, Prometheus Operator)
CUSTOM = {"ScaledObject", "TriggerAuthentication", "ServiceMonitor", "PodMonitor"}
SECRETISH = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|DATABASE_URL|CONNECTION", re.IGNORECASE)

sqlite_pass = pytest.mark.skipif(
    ON_POSTGRES, reason="about the chart, not the run's database: run on the SQLite pass"
)

Manifest = dict[str, Any]


def render(*args: str, kube: str = "1.33.0") -> list[Manifest]:
    result = helm(
        "template", "rel", str(CHART), "--namespace", "imaging", "--kube-version", kube, *args
    )
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind(manifests: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def container(deployment: Manifest) -> Manifest:
    containers: list[Manifest] = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def flag(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


@pytest.fixture(scope="module")
def gpu() -> list[Manifest]:
    return render("-f", str(GPU_VALUES))


@sqlite_pass
@pytest.mark.parametrize("values", [[], ["-f", str(GPU_VALUES)]], ids=["defaults", "gpu"])
def test_the_chart_lints_strictly(values: list[str]) -> None:
    result = helm("lint", "--strict", str(CHART), *values)
    assert "0 chart(s) failed" in result.stdout


@sqlite_pass
def test_the_manifests_are_valid_for_kubernetes_1_30_to_1_33() -> None:
    try:
        import kubernetes_validate
    except ImportError:
        missing("kubernetes-validate")
    unchecked: set[str] = set()
    for kube in KUBERNETES:
        for values in ([], ["-f", str(GPU_VALUES)]):
            for manifest in render(*values, kube=kube):
                try:
                    kubernetes_validate.validate(manifest, kube, strict=True)
                except kubernetes_validate.SchemaNotFoundError:
                    unchecked.add(manifest["kind"])
                except kubernetes_validate.ValidationError as exc:
                    name = f"{manifest['kind']}/{manifest['metadata']['name']}"
                    pytest.fail(f"{name} is not valid for Kubernetes {kube}: {exc.message}")
    # Only the custom resources go unchecked (KEDA's and the Prometheus Operator's)
    assert unchecked == CUSTOM


@sqlite_pass
def test_each_worker_pool_is_a_deployment_with_its_gpus_nodes_and_drain(
    gpu: list[Manifest],
) -> None:
    values = yaml.safe_load(GPU_VALUES.read_text())
    deployments = by_kind(gpu, "Deployment")
    assert set(deployments) == {"rel-darkroom-api"} | {
        f"rel-darkroom-worker-{pool['name']}" for pool in values["workers"]
    }
    catalog = Catalog.load(None)
    for pool in values["workers"]:
        deployment = deployments[f"rel-darkroom-worker-{pool['name']}"]
        spec = deployment["spec"]["template"]["spec"]
        worker = container(deployment)
        args = worker["args"]
        assert args[0] == "worker"
        assert set(pool["models"]) <= set(catalog.models)  # a worker refuses unknown models
        assert flag(args, "--models") == ",".join(pool["models"])
        assert flag(args, "--concurrency") == str(pool["concurrency"])
        assert flag(args, "--pin") == (",".join(pool["pin"]) if "pin" in pool else None)
        assert "--no-preview-only" in args
        variant = pool["variant"]
        assert worker["image"] == "registry.example.com/darkroom:0.1.0-" + variant

        # The drain: SIGTERM from the preStop hook, then --grace seconds and a margin
        grace = int(flag(args, "--grace") or 0)
        assert grace == pool["grace"]
        assert spec["terminationGracePeriodSeconds"] >= grace + 10
        assert "kill -TERM 1" in worker["lifecycle"]["preStop"]["exec"]["command"][-1]

        # The metrics port, and the probes on it
        port = int(flag(args, "--metrics-port") or 0)
        assert [p["containerPort"] for p in worker["ports"] if p["name"] == "metrics"] == [port]
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            assert worker[probe]["httpGet"] == {"path": path, "port": "metrics"}

        limits = worker["resources"].get("limits", {})
        if pool.get("gpus"):
            assert limits["nvidia.com/gpu"] == pool["gpus"]
            expected = pool.get("nodeSelector", {"nvidia.com/gpu.present": "true"})
            assert spec["nodeSelector"] == expected
            assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec[
                "tolerations"
            ]
        else:
            assert "nvidia.com/gpu" not in limits
            assert "nodeSelector" not in spec and "tolerations" not in spec
        autoscaled = pool.get("autoscaling", {}).get("enabled", False)
        assert ("replicas" in deployment["spec"]) is not autoscaled  # KEDA owns the count
    pinned = render("--set", "workers[0].name=flux,workers[0].pin={flux-schnell,z-image-turbo}")
    args = container(by_kind(pinned, "Deployment")["rel-darkroom-worker-flux"])["args"]
    assert flag(args, "--pin") == "flux-schnell,z-image-turbo"


def test_keda_scales_each_pool_on_the_projects_queued_for_its_models(
    gpu: list[Manifest], server_factory: ServerFactory
) -> None:
    scaled = by_kind(gpu, "ScaledObject")
    assert set(scaled) == {"rel-darkroom-worker-flux", "rel-darkroom-worker-zimage"}
    for name, scaler in scaled.items():
        assert scaler["spec"]["scaleTargetRef"] == {"name": name}
    flux = scaled["rel-darkroom-worker-flux"]["spec"]
    assert (flux["minReplicaCount"], flux["maxReplicaCount"]) == (0, 8)
    [trigger] = flux["triggers"]
    assert trigger["type"] == "postgresql"
    assert trigger["metadata"]["targetQueryValue"] == "4"
    auth = by_kind(gpu, "TriggerAuthentication")[trigger["authenticationRef"]["name"]]
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "connection", "name": "darkroom", "key": "keda-connection"}
    ]
    [prometheus] = scaled["rel-darkroom-worker-zimage"]["spec"]["triggers"]
    assert prometheus["type"] == "prometheus"
    assert prometheus["metadata"]["query"] == (
        'sum(max by (model) (darkroom_queue_depth{namespace="imaging",'
        'service="rel-darkroom-api",model=~"z-image-turbo"}))'
    )
    assert prometheus["metadata"]["threshold"] == "8"

    # The query KEDA runs, on a database of this run's dialect with projects queued (no worker)
    server = server_factory(workers=0)
    account = server.account()
    with server.client(account) as http:
        for model in ("flux-schnell", "flux-schnell", "z-image-turbo"):
            body = {"image_count": 1, "model": model, "style": {"prompt": "x"}}
            assert http.post("/v1/ai-image-generator", json=body).status_code == 200
    every = render("--set", "workers[0].name=all", "--set", "workers[0].autoscaling.enabled=true")
    queries = {
        "flux": trigger["metadata"]["query"],
        "all": by_kind(every, "ScaledObject")["rel-darkroom-worker-all"]["spec"]["triggers"][0][
            "metadata"
        ]["query"],
    }
    counted = {
        name: server.services.db.query(lambda conn, q=query: conn.exec_driver_sql(q).scalar_one())
        for name, query in queries.items()
    }
    assert counted == {"flux": 2, "all": 3}


@sqlite_pass
def test_the_migrations_run_as_a_hook_before_the_deployments(gpu: list[Manifest]) -> None:
    [job] = by_kind(gpu, "Job").values()
    annotations = job["metadata"]["annotations"]
    assert set(annotations["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    assert "hook-succeeded" in annotations["helm.sh/hook-delete-policy"]
    migrate = container(job)
    assert migrate["args"] == ["migrate"]
    api = container(by_kind(gpu, "Deployment")["rel-darkroom-api"])
    assert migrate["image"] == api["image"]
    # Everything else is applied after the hook succeeded: none of it is a hook
    hooks = [m["kind"] for m in gpu if "helm.sh/hook" in m["metadata"].get("annotations", {})]
    assert hooks == ["Job"]


@sqlite_pass
def test_no_secret_is_a_plain_value(gpu: list[Manifest]) -> None:
    for manifests, secret in (
        (gpu, "darkroom"),
        (render("--set", "secrets.existingSecret=mine"), "mine"),
    ):
        assert "Secret" not in {m["kind"] for m in manifests}
        pods = [
            m["spec"]["template"]["spec"] for m in manifests if m["kind"] in ("Deployment", "Job")
        ]
        assert len(pods) >= 3
        for pod in pods:
            volumes = {v["name"]: v for v in pod["volumes"]}
            for variable in container({"spec": {"template": {"spec": pod}}})["env"]:
                if not SECRETISH.search(variable["name"]):
                    continue
                if variable["name"].endswith("_FILE"):
                    assert variable["value"].startswith("/run/secrets/darkroom/")
                    assert volumes["secrets"]["secret"]["secretName"] == secret
                else:
                    assert "value" not in variable, variable
                    assert variable["valueFrom"]["secretKeyRef"]["name"] == secret


@sqlite_pass
def test_the_api_nodes_are_probed_exposed_and_scaled(gpu: list[Manifest]) -> None:
    deployment = by_kind(gpu, "Deployment")["rel-darkroom-api"]
    api = container(deployment)
    assert api["args"] == ["serve", "--workers", "0"]
    assert api["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert api["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert "replicas" not in deployment["spec"]  # the HPA's
    env = {v["name"]: v.get("value") for v in api["env"]}
    assert env["DARKROOM_PUBLIC_URL"] == "https://img.example.com"
    assert env["DARKROOM_STORAGE_URL"] == "s3://darkroom-images/prod"
    hpa = by_kind(gpu, "HorizontalPodAutoscaler")["rel-darkroom-api"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == "rel-darkroom-api"
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 12)
    assert hpa["metrics"][0]["resource"]["name"] == "cpu"
    [ingress] = by_kind(gpu, "Ingress").values()
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "rel-darkroom-api", "port": {"name": "http"}}
    assert "rel-darkroom-api" in by_kind(gpu, "PodDisruptionBudget")
    # One API pod: no budget that would block every node drain
    assert by_kind(render("--set", "api.replicas=1"), "PodDisruptionBudget") == {}


@sqlite_pass
def test_the_catalog_override_is_a_config_map_darkroom_accepts(
    gpu: list[Manifest], tmp_path: Path
) -> None:
    values = yaml.safe_load(GPU_VALUES.read_text())
    [config] = by_kind(gpu, "ConfigMap").values()
    assert config["data"]["catalog.toml"].strip() == values["catalog"]["override"].strip()
    override = tmp_path / "catalog.toml"
    override.write_text(config["data"]["catalog.toml"])
    assert "4k" in Catalog.load(override).tiers["pro"].resolutions
    for deployment in by_kind(gpu, "Deployment").values():
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        assert volumes["catalog"]["configMap"]["name"] == config["metadata"]["name"]
        mounts = {m["name"]: m["mountPath"] for m in container(deployment)["volumeMounts"]}
        env = {v["name"]: v.get("value") for v in container(deployment)["env"]}
        assert env["DARKROOM_CATALOG"] == mounts["catalog"] + "/catalog.toml"
        # A changed override restarts the pods
        assert "checksum/catalog" in deployment["spec"]["template"]["metadata"]["annotations"]


@sqlite_pass
@pytest.mark.parametrize(
    ("values", "error"),
    [
        ("workers[0].name=a,workers[1].name=a", 'two pools are named "a"'),
        ("workers[0].name=a,workers[0].gpus=1", "gpus need variant cuda"),
        ("workers[0].name=a,workers[0].concurency=2", "concurency"),
        (
            "workers[0].name=a,workers[0].autoscaling.enabled=true,"
            "workers[0].autoscaling.trigger=prometheus",
            "prometheusAddress is needed",
        ),
    ],
    ids=["duplicate-pool", "gpus-on-cpu", "misspelt-key", "prometheus-without-address"],
)
def test_the_chart_refuses_values_it_cannot_honour(values: str, error: str) -> None:
    result = helm("template", "rel", str(CHART), "--set", values, check=False)
    assert result.returncode != 0
    assert error in result.stderr
