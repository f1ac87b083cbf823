"""The production deployment, checked offline: the Helm chart, the Strimzi and MongoDB
resources, the Zero to JupyterHub values, the Dockerfiles and the compose file.

Nothing here runs on a cluster or a Docker engine (neither exists on these
machines): the chart is linted and rendered by a real helm (built by
infra/install.sh), every rendered object of a Kubernetes kind is validated
against the Kubernetes JSON schemas shipped in `kubernetes-validate`, and the
custom resources (Strimzi, MongoDB, KEDA) get structural checks.
"""

from __future__ import annotations

import ast
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from infra import compose_setup, strimzi
from infra.kafka_access import ACCESS, ADMIN, USERS, acls, principal
from schemas import all_topics
from services.gateway.settings import GatewaySettings
from services.provisioner.settings import ProvisionerSettings
from services.sync.settings import SyncSettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "nbembed"
HELM = ROOT / ".cache" / "bin" / "helm-v3.22.0" / "helm"
KUBE_VERSION = kubernetes_validate.latest_version()
SETTINGS = {"gateway": GatewaySettings, "provisioner": ProvisionerSettings, "sync": SyncSettings}
CUSTOM_KINDS = {"ScaledObject", "TriggerAuthentication"}
KEDA_ON = [f"--set={s}.keda.enabled=true" for s in SETTINGS]


def helm(*args: str) -> str:
    assert HELM.exists(), "helm is built by infra/install.sh (make install)"
    result = subprocess.run(
        [str(HELM), *args, f"--kube-version={KUBE_VERSION}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout


@cache
def rendered(*extra: str) -> list[dict[str, Any]]:
    text = helm("template", "nbembed", str(CHART), "--namespace=nbembed", *extra)
    return [doc for doc in yaml.safe_load_all(text) if doc]


def of_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def test_chart_lints_strictly() -> None:
    helm("lint", "--strict", str(CHART))
    helm("lint", "--strict", str(CHART), *KEDA_ON)


@pytest.mark.parametrize("extra", [(), tuple(KEDA_ON)], ids=["cpu", "keda"])
def test_every_rendered_object_is_valid_kubernetes(extra: tuple[str, ...]) -> None:
    objects = rendered(*extra)
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy"} <= kinds
    for obj in objects:
        if obj["kind"] in CUSTOM_KINDS:
            continue
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


def test_cpu_autoscaling_or_keda_never_both() -> None:
    assert len(of_kind(rendered(), "HorizontalPodAutoscaler")) == 3
    assert not of_kind(rendered(), "ScaledObject")
    keda = rendered(*KEDA_ON)
    assert not of_kind(keda, "HorizontalPodAutoscaler")
    scaled = of_kind(keda, "ScaledObject")
    groups = {
        t["metadata"]["consumerGroup"] for s in scaled.values() for t in s["spec"]["triggers"]
    }
    assert groups == {g for access in ACCESS.values() for g in access.groups()}
    auth = of_kind(keda, "TriggerAuthentication")
    for obj in scaled.values():
        for trigger in obj["spec"]["triggers"]:
            assert trigger["type"] == "kafka" and trigger["metadata"]["sasl"] == "scram_sha512"
            assert trigger["authenticationRef"]["name"] in auth
    for obj in auth.values():
        (ref,) = obj["spec"]["secretTargetRef"]
        assert ref["parameter"] == "password" and ref["name"] and ref["key"]


def _env(deployment: dict[str, Any]) -> dict[str, str]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", "") for e in container["env"]}


@pytest.mark.parametrize("service", SETTINGS)
def test_every_setting_is_wired_and_secrets_are_files(service: str) -> None:
    deployment = of_kind(rendered(), "Deployment")[f"nbembed-{service}"]
    env = _env(deployment)
    prefix = f"NBEMBED_{service.upper()}_"
    fields = set(SETTINGS[service].model_fields)
    for name in fields:
        # A secret is passed as a file; its value variant stays unset.
        if f"{name}_file" in fields:
            assert f"{prefix}{name.upper()}_FILE" in env, name
            assert f"{prefix}{name.upper()}" not in env, name
        elif not name.endswith("_file"):
            assert f"{prefix}{name.upper()}" in env, name
    assert set(env) <= {f"{prefix}{n.upper()}" for n in fields}, "unknown setting"
    # The rendered environment is a valid configuration (secret files aside).
    plain = {k: v for k, v in env.items() if not k.endswith("_FILE")}
    assert plain[f"{prefix}KAFKA_USERNAME"] == principal(service)
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert plain[f"{prefix}HUB_URL"] == values["hubApiUrl"]
    if service != "provisioner":
        assert plain[f"{prefix}PUBLIC_HUB_URL"] == values["hubUrl"]
    assert plain[f"{prefix}HTTP_HOST"] == "0.0.0.0"  # noqa: S104 (in a pod, by design)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"] == [f"services.{service}"]
    mounted = {
        item["path"]
        for source in deployment["spec"]["template"]["spec"]["volumes"][0]["projected"]["sources"]
        for item in source["secret"]["items"]
    }
    files = {v.rsplit("/", 1)[1] for k, v in env.items() if k.endswith("_FILE")}
    assert files == mounted


@pytest.mark.parametrize("service", SETTINGS)
def test_pods_are_locked_down_and_probed(service: str) -> None:
    pod = of_kind(rendered(), "Deployment")[f"nbembed-{service}"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert f"nbembed-{service}" in of_kind(rendered(), "PodDisruptionBudget")


def test_network_policies_admit_only_the_callers_of_today() -> None:
    policies = of_kind(rendered(), "NetworkPolicy")

    def callers(service: str) -> set[str]:
        (rule,) = policies[f"nbembed-{service}"]["spec"]["ingress"]
        labels = [peer["podSelector"]["matchLabels"] for peer in rule.get("from", [])]
        return {m.get("app.kubernetes.io/component") or m["component"] for m in labels}

    assert callers("provisioner") == {"sync", "hub"}  # the hub: notices of stopped servers
    assert callers("sync") == {"gateway"}
    for policy in policies.values():
        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
        egress = policy["spec"]["egress"]
        assert all(rule.get("to") for rule in egress), "no egress rule open to everywhere"


def test_values_hold_no_secret_value() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for service in SETTINGS:
        for ref in values[service]["secrets"].values():
            assert set(ref) == {"name", "key"}
        fields = set(SETTINGS[service].model_fields)
        secret_settings = {n for n in fields if f"{n}_file" in fields} | {"mongodb_password"}
        assert not secret_settings & set(values[service]["settings"])
        assert set(values[service]["secrets"]) <= secret_settings | {"tenants"}


def _docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_strimzi_files_are_generated_from_the_access_table() -> None:
    for name, text in strimzi.render().items():
        assert (DEPLOY / "strimzi" / name).read_text() == text, (
            f"deploy/strimzi/{name} is stale: python -m infra.strimzi deploy/strimzi"
        )
    users = _docs(DEPLOY / "strimzi" / "kafka-users.yaml")
    assert {u["metadata"]["name"] for u in users} == {principal(s) for s in ACCESS}
    granted = set().union(*(strimzi.acls_of(u) for u in users))
    assert granted == acls()
    for user in users:
        assert user["spec"]["authentication"]["type"] == "scram-sha-512"
        assert user["metadata"]["labels"]["strimzi.io/cluster"] == strimzi.CLUSTER
    topics = _docs(DEPLOY / "strimzi" / "kafka-topics.yaml")
    assert sorted(t["spec"]["topicName"] for t in topics) == sorted(all_topics())
    assert len({t["metadata"]["name"] for t in topics}) == len(topics)


def test_strimzi_cluster_is_kraft_with_three_brokers_and_scram() -> None:
    docs = {d["kind"]: d for d in _docs(DEPLOY / "strimzi" / "kafka.yaml")}
    pool, kafka = docs["KafkaNodePool"], docs["Kafka"]
    assert pool["spec"]["replicas"] == 3 and set(pool["spec"]["roles"]) == {"controller", "broker"}
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
    assert kafka["metadata"]["name"] == strimzi.CLUSTER
    assert "zookeeper" not in kafka["spec"]
    (listener,) = kafka["spec"]["kafka"]["listeners"]
    assert listener["authentication"]["type"] == "scram-sha-512"
    peers = [p.get("podSelector", {}).get("matchLabels") for p in listener["networkPolicyPeers"]]
    assert {"app.kubernetes.io/name": "nbembed"} in peers
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["kafka"]["bootstrap"] == f"{strimzi.CLUSTER}-kafka-bootstrap:{listener['port']}"
    assert kafka["spec"]["kafka"]["authorization"]["type"] == "simple"
    assert kafka["spec"]["kafka"]["config"]["auto.create.topics.enable"] is False


def test_mongodb_is_a_replica_set_with_one_user_per_service() -> None:
    mongo, policy = _docs(DEPLOY / "mongodb" / "mongodb.yaml")
    kubernetes_validate.validate(policy, KUBE_VERSION, strict=True)
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert policy["spec"]["podSelector"]["matchLabels"] == values["mongodb"]["podSelector"]
    assert mongo["kind"] == "MongoDBCommunity" and mongo["spec"]["type"] == "ReplicaSet"
    assert mongo["spec"]["members"] >= 3
    users = {u["name"]: u for u in mongo["spec"]["users"]}
    for service in SETTINGS:
        database = values[service]["settings"]["mongodb_database"]
        assert users[service]["roles"] == [{"name": "readWrite", "db": database}]
        assert (
            users[service]["passwordSecretRef"]["name"]
            == (values[service]["secrets"]["mongodb_password"]["name"])
        )
    assert f"replicaSet={mongo['metadata']['name']}" in values["mongodb"]["uri"]


def test_z2jh_values_configure_the_ticket_login_csp_and_user_egress() -> None:
    z2jh = yaml.safe_load((DEPLOY / "helm" / "values-z2jh.yaml").read_text())
    hub = z2jh["hub"]
    assert hub["config"]["JupyterHub"]["authenticator_class"] == (
        "infra.hub.ticket_login.TicketAuthenticator"
    )
    assert "nbembed" in hub["services"] and "api_token" not in hub["services"]["nbembed"]
    local_roles = {role["name"]: role for role in _local_hub_roles()}
    for name in ("nbembed", "user"):
        assert hub["loadRoles"][name]["scopes"] == local_roles[name]["scopes"], name
        assert hub["loadRoles"][name].get("services") == local_roles[name].get("services")
    assert "frame-ancestors" in hub["extraConfig"]["nbembed-csp"]
    assert "hub_frames.TenantFrameAncestors" in hub["extraConfig"]["nbembed-csp"]
    compile(hub["extraConfig"]["nbembed-csp"], "nbembed-csp", "exec")
    singleuser = z2jh["singleuser"]
    assert singleuser["extraEnv"]["NBEMBED_GATEWAY_URL"] == "http://nbembed-gateway:8080"
    assert singleuser["cloudMetadata"]["blockWithIptables"] is False  # no privileged init
    policy = singleuser["networkPolicy"]
    assert policy["enabled"] is True
    rules = policy["egressAllowRules"]
    assert not any(v for k, v in rules.items() if k != "dnsPortsKubeSystemNamespace")
    (gateway,) = policy["egress"]
    assert gateway["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == (
        "gateway"
    )
    subdomains = yaml.safe_load((DEPLOY / "helm" / "values-z2jh-subdomains.yaml").read_text())
    config = subdomains["hub"]["config"]["JupyterHub"]
    assert config["subdomain_host"] and config["cookie_host_prefix_enabled"] is True
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["provisioner"]["secrets"]["hub_api_token"] == {
        "name": "hub",
        "key": "hub.services.nbembed.apiToken",
    }


def _local_hub_roles() -> list[dict[str, Any]]:
    """``c.JupyterHub.load_roles`` of the local stack's hub config, read without running it."""
    tree = ast.parse((ROOT / "infra" / "hub" / "jupyterhub_config.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == (
            "c.JupyterHub.load_roles"
        ):
            roles: list[dict[str, Any]] = ast.literal_eval(node.value)
            return roles
    raise AssertionError("no load_roles in infra/hub/jupyterhub_config.py")


def _stages(path: Path) -> dict[str, list[dict[str, Any]]]:
    """Each stage's instructions, by stage name."""
    parser = DockerfileParser(path=str(path))
    stages: dict[str, list[dict[str, Any]]] = {}
    current: list[dict[str, Any]] = []
    for instruction in parser.structure:
        if instruction["instruction"] == "FROM":
            current = []
            stages[instruction["value"].split()[-1]] = current
        current.append(instruction)
    return stages


@pytest.mark.parametrize(
    ("name", "stage", "uid"),
    [("services", "services", "10001"), ("singleuser", "singleuser", "1000")],
)
def test_images_run_unprivileged_from_pinned_bases(name: str, stage: str, uid: str) -> None:
    path = DEPLOY / "docker" / f"{name}.Dockerfile"
    stages = _stages(path)
    users = [i["value"] for i in stages[stage] if i["instruction"] == "USER"]
    assert users and users[-1].split(":")[0] == uid
    args = {
        i["value"].split("=", 1)[0]: i["value"].split("=", 1)[1]
        for i in DockerfileParser(path=str(path)).structure
        if i["instruction"] == "ARG" and "=" in i["value"]
    }
    for instructions in stages.values():
        base = instructions[0]["value"].split()[0]
        base = args.get(base.strip("${}"), base)
        if base in stages:
            continue
        assert ":" in base and not base.endswith(":latest"), base
    for instruction in DockerfileParser(path=str(path)).structure:
        if instruction["instruction"] in {"ENV", "ARG"}:
            text = instruction["value"].upper()
            assert not any(w in text for w in ("PASSWORD=", "TOKEN=", "SECRET=", "KEY=")), text


def test_compose_runs_real_mongo_and_kafka_with_secrets_as_files() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert services["mongo"]["image"].startswith("mongo:")
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert {"gateway", "provisioner", "sync", "hub", "setup"} <= set(services)
    declared = set(compose["secrets"])
    for name, service in services.items():
        assert set(service.get("secrets", [])) <= declared, name
        for key, value in service.get("environment", {}).items():
            secretish = any(w in key for w in ("PASSWORD", "TOKEN", "TICKET_KEY", "TENANTS"))
            if secretish:
                assert key.endswith("_FILE") and value.startswith("/run/secrets/"), key
                assert value.rsplit("/", 1)[1] in service["secrets"], key
    for name in ("gateway", "provisioner", "sync"):
        service = services[name]
        assert service["command"] == [f"services.{name}"]
        assert service["user"] != "0" and service["read_only"] is True
        assert service["depends_on"]["setup"]["condition"] == "service_completed_successfully"
        prefix = f"NBEMBED_{name.upper()}_"
        assert all(k.startswith(prefix) for k in service["environment"]), name
        fields = set(SETTINGS[name].model_fields)
        assert {k.removeprefix(prefix).lower() for k in service["environment"]} <= fields
    for port in ("gateway", "hub"):
        assert all(p.startswith("127.0.0.1:") for p in services[port]["ports"])
    # Kafka's SCRAM users are the access table's, each with its own password file.
    start = DEPLOY / "compose" / "kafka-start.sh"
    (loop,) = [line for line in start.read_text().splitlines() if line.startswith("for user in")]
    assert loop.removeprefix("for user in ").removesuffix("; do").split() == list(USERS)
    assert set(services["kafka"]["secrets"]) == {f"kafka-{user}-password" for user in USERS}
    # make-secrets.sh writes every secret file compose mounts but the tenants, which are yours.
    maker = (DEPLOY / "compose" / "make-secrets.sh").read_text().replace("\\\n", " ")
    made = maker.split("for name in ", 1)[1].split("; do", 1)[0].split()
    files = {Path(secret["file"]).name for secret in compose["secrets"].values()}
    assert set(made) == files - {"tenants.json"}
    for script in (start, DEPLOY / "compose" / "make-secrets.sh"):
        subprocess.run(["bash", "-n", str(script)], check=True)


def test_compose_setup_logs_in_as_the_kafka_admin_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "kafka-admin-password").write_text("s3cret\n")
    settings = compose_setup.ComposeSetupSettings(secrets_dir=tmp_path)
    options = compose_setup.kafka_admin_options(settings)
    assert options["sasl_plain_username"] == principal(ADMIN)
    assert options["sasl_plain_password"] == "s3cret"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
