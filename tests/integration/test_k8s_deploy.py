"""deploy/ on the real apiserver: the manifests apply (server-side apply), and the executor
works with nothing but the ServiceAccount's token (TokenRequest API) — while what flowd does
not need stays forbidden."""

from __future__ import annotations

import asyncio
import copy
import json
import ssl
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_asyncio import client

from flowd.k8s.executor import KubernetesExecutor
from flowd.k8s.harness import Harness
from tests.integration.k8s_helpers import dag, job, outcome, reports, submit, untaint_nodes, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.k8s, pytest.mark.asyncio(loop_scope="session")]

MANAGED = "app.kubernetes.io%2Fmanaged-by%3Dflowd"
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"

# kind -> (API prefix, plural, namespaced)
PATHS = {
    "Namespace": ("/api/v1", "namespaces", False),
    "ServiceAccount": ("/api/v1", "serviceaccounts", True),
    "ConfigMap": ("/api/v1", "configmaps", True),
    "Service": ("/api/v1", "services", True),
    "Deployment": ("/apis/apps/v1", "deployments", True),
    "PodDisruptionBudget": ("/apis/policy/v1", "poddisruptionbudgets", True),
    "ClusterRole": ("/apis/rbac.authorization.k8s.io/v1", "clusterroles", False),
    "ClusterRoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "clusterrolebindings", False),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles", True),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings", True),
}


def render(directory: Path, namespace: str) -> list[dict[str, Any]]:
    """A minimal `kustomize build` of a base: its resources with the namespace set (kubectl is
    not needed; the base uses nothing else that changes what the apiserver sees)."""
    kust = yaml.safe_load((directory / "kustomization.yaml").read_text())
    docs: list[dict[str, Any]] = []
    for rel in kust["resources"]:
        docs.extend(d for d in yaml.safe_load_all((directory / rel).read_text()) if d)
    for doc in docs:
        meta = doc["metadata"]
        if doc["kind"] == "Namespace":
            meta["name"] = namespace
        elif PATHS[doc["kind"]][2]:
            meta["namespace"] = namespace
        for subject in doc.get("subjects", []):
            subject["namespace"] = namespace
    return docs


def object_path(doc: dict[str, Any]) -> str:
    prefix, plural, namespaced = PATHS[doc["kind"]]
    ns = f"/namespaces/{doc['metadata']['namespace']}" if namespaced else ""
    return f"{prefix}{ns}/{plural}/{doc['metadata']['name']}"


class Http:
    """Plain HTTPS to the apiserver as admin (client cert) or with a bearer token."""

    def __init__(self, cluster: Any, token: str | None = None) -> None:
        self.server = cluster.server
        self.ctx = ssl.create_default_context(cafile=str(cluster.pki / "ca.crt"))
        if token is None:
            self.ctx.load_cert_chain(str(cluster.pki / "admin.crt"), str(cluster.pki / "admin.key"))
        self.token = token

    def call(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> tuple[int, dict]:
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=15) as r:
                raw = r.read()
                return r.status, json.loads(raw) if raw else {}
        except urllib.error.HTTPError as e:
            raw = e.read()
            return e.code, json.loads(raw) if raw.startswith(b"{") else {"raw": raw[:200]}

    def apply(self, doc: dict[str, Any], *, dry_run: bool = False) -> tuple[int, dict]:
        query = "?fieldManager=flowd-deploy-test&force=true" + ("&dryRun=All" if dry_run else "")
        return self.call("PATCH", object_path(doc) + query, doc, content_type="application/apply-patch+yaml")


@pytest.mark.filterwarnings("ignore::pytest.PytestWarning")
def test_kustomize_layout() -> None:
    """Every resource the bases and components name exists and is a kind the test knows."""
    for kust_file in DEPLOY.rglob("kustomization.yaml"):
        kust = yaml.safe_load(kust_file.read_text())
        for rel in kust.get("resources", []) + kust.get("components", []):
            assert (kust_file.parent / rel).exists(), f"{kust_file}: {rel} missing"
    kinds = {d["kind"] for d in render(DEPLOY / "base", "x")}
    assert kinds == {"Namespace", "ServiceAccount", "ClusterRole", "RoleBinding", "ConfigMap", "Deployment", "Service",
                     "PodDisruptionBudget"}
    # the budget covers exactly the daemon's pods
    by_kind = {d["kind"]: d for d in render(DEPLOY / "base", "x")}
    pod_labels = by_kind["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert by_kind["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == pod_labels


async def test_manifests_apply_and_rbac_is_exactly_enough(k8s_cluster):
    untaint_nodes(k8s_cluster)
    ns = f"flowd-{uuid.uuid4().hex[:8]}"
    admin = Http(k8s_cluster)
    docs = render(DEPLOY / "base", ns)
    for doc in docs:
        code, body = admin.apply(doc)
        assert code in (200, 201), (doc["kind"], body)
    # the optional components validate too (server-side dry run: nothing is granted)
    crb = yaml.safe_load((DEPLOY / "components/cluster-wide/clusterrolebinding.yaml").read_text())
    crb["metadata"]["name"] = f"flowd-executor-{ns}"
    crb["subjects"][0]["namespace"] = ns
    code, body = admin.apply(crb, dry_run=True)
    assert code in (200, 201), body

    # the namespace enforces the `restricted` Pod Security Standard, and the daemon's own pod
    # passes it (a server-side dry run of a Pod from the Deployment's template)
    code, namespace = admin.call("GET", f"/api/v1/namespaces/{ns}")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    template = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "flowd-psa-check", "namespace": ns},
           "spec": template["spec"]}
    code, body = admin.call("POST", f"/api/v1/namespaces/{ns}/pods?dryRun=All", pod)
    assert code == 201, body
    privileged = copy.deepcopy(pod)
    privileged["spec"]["containers"][0]["securityContext"]["privileged"] = True
    del privileged["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"]  # invalid with it
    code, body = admin.call("POST", f"/api/v1/namespaces/{ns}/pods?dryRun=All", privileged)
    assert code == 403 and "violates PodSecurity" in body.get("message", ""), body

    # the daemon's identity: a token of its ServiceAccount, made by the apiserver itself
    code, review = admin.call("POST", f"/api/v1/namespaces/{ns}/serviceaccounts/flowd/token",
                              {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                               "spec": {"expirationSeconds": 3600}})
    assert code == 201, review
    token = review["status"]["token"]

    # sufficient: a DAG with a job, outputs, a service, a stop and TTL deletions, as the SA
    cfg = client.Configuration(host=k8s_cluster.server)
    cfg.ssl_ca_cert = str(k8s_cluster.pki / "ca.crt")
    cfg.api_key = {"BearerToken": token}
    cfg.api_key_prefix = {"BearerToken": "Bearer"}
    api = client.ApiClient(cfg)
    pipeline = dag("rbac", [
        job("ok", annotations=outcome(message={"x": 1})),
        job("web", kind="service", annotations=outcome("hang"), run={"ports": [8080]}),
        job("hang", annotations=outcome("hang")),
    ])
    h = Harness()
    try:
        async with KubernetesExecutor(send=h.send, api=api, namespace=ns, watch_namespaces=[ns],
                                      default_ttl=0, reconcile_interval=1.0) as ex:
            task = asyncio.create_task(h.run(ex, submit("r-rbac", pipeline)))
            await wait_for(lambda: ("hang", 1, "running", None) in reports(h) and ("ok", 1, "succeeded", None) in reports(h),
                           what="ops running")
            h.stop("r-rbac")
            views = await asyncio.wait_for(task, 30)
            assert ex.stats["create_errors"] == 0

            def left() -> bool:
                _, pods = admin.call("GET", f"/api/v1/namespaces/{ns}/pods?labelSelector={MANAGED}")
                _, svcs = admin.call("GET", f"/api/v1/namespaces/{ns}/services?labelSelector={MANAGED}")
                return not pods["items"] and not svcs["items"]

            await wait_for(left, what="pods and services cleaned up with the SA's rights")
    finally:
        await api.close()
    view = views["r-rbac"]
    assert view.ops["ok"].status == "succeeded" and view.ops["ok"].outputs == {"x": 1}
    assert view.ops["hang"].status == "stopped" and view.ops["web"].status == "stopped"

    # no broader than needed: everything flowd does not do is forbidden
    sa = Http(k8s_cluster, token)
    other = await k8s_cluster.create_namespace("rbac-other")
    forbidden = [
        ("GET", f"/api/v1/namespaces/{ns}/secrets", None),
        ("GET", f"/api/v1/namespaces/{ns}/configmaps", None),
        ("GET", f"/api/v1/namespaces/{ns}/services", None),
        ("GET", f"/api/v1/namespaces/{other}/pods", None),
        ("POST", f"/api/v1/namespaces/{other}/pods",
         {"metadata": {"name": "x"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}),
        ("GET", "/api/v1/nodes", None),
        ("GET", "/api/v1/namespaces", None),
        ("DELETE", f"/api/v1/namespaces/{ns}", None),
        ("GET", f"/api/v1/namespaces/{other}/pods/x/log", None),
        ("POST", f"/api/v1/namespaces/{ns}/pods/x/exec", None),
        ("POST", f"/apis/apps/v1/namespaces/{ns}/deployments", {"metadata": {"name": "x"}}),
        ("POST", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings", {"metadata": {"name": "x"}}),
        ("PATCH", f"/api/v1/namespaces/{ns}/pods/x/status", {}),
    ]
    for method, path, body in forbidden:
        code, answer = sa.call(method, path, copy.deepcopy(body),
                               content_type="application/merge-patch+json" if method == "PATCH" else "application/json")
        assert code == 403, (method, path, code, answer)
    # and what it needs is allowed (the executor above did it; spot-check list+watch)
    code, _ = sa.call("GET", f"/api/v1/namespaces/{ns}/pods?labelSelector=app.kubernetes.io/managed-by%3Dflowd")
    assert code == 200
    # pods/log get (intermediate metrics): allowed, so a missing pod is a 404, not a 403
    code, _ = sa.call("GET", f"/api/v1/namespaces/{ns}/pods/x/log")
    assert code == 404


async def test_the_ui_component_applies_passes_restricted_and_may_only_read_pods_and_logs(k8s_cluster):
    """deploy/components/ui (``flowd ui --daemon`` beside the daemons): its objects apply on the
    base's namespace, its pod passes the `restricted` Pod Security Standard, and its
    ServiceAccount may list/get pods and get their logs there, nothing more (SubjectAccessReview
    by the apiserver's own RBAC authorizer)."""
    ns = f"flowd-ui-{uuid.uuid4().hex[:8]}"
    admin = Http(k8s_cluster)
    base = {d["kind"]: d for d in render(DEPLOY / "base", ns)}
    for kind in ("Namespace", "ConfigMap"):
        code, body = admin.apply(base[kind])
        assert code in (200, 201), (kind, body)
    docs = render(DEPLOY / "components/ui", ns)
    assert {d["kind"] for d in docs} == {"ServiceAccount", "Role", "RoleBinding", "Deployment", "Service"}
    for doc in docs:
        code, body = admin.apply(doc)
        assert code in (200, 201), (doc["kind"], body)
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    service = next(d for d in docs if d["kind"] == "Service")
    template = deployment["spec"]["template"]
    assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
    args = template["spec"]["containers"][0]["args"]
    assert args[:2] == ["ui", "--daemon"] and "--allow-actions" not in args  # read-only
    # the UI's command line is one flowd accepts
    from flowd.cli import build_parser

    build_parser().parse_args(args)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "flowd-ui-psa-check", "namespace": ns},
           "spec": template["spec"]}
    code, body = admin.call("POST", f"/api/v1/namespaces/{ns}/pods?dryRun=All", pod)
    assert code == 201, body

    def allowed(verb: str, resource: str, namespace: str, subresource: str = "") -> bool:
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                  "spec": {"user": f"system:serviceaccount:{ns}:flowd-ui",
                           "groups": ["system:serviceaccounts", f"system:serviceaccounts:{ns}"],
                           "resourceAttributes": {"namespace": namespace, "verb": verb, "resource": resource,
                                                  "subresource": subresource}}}
        code, answer = admin.call("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", review)
        assert code == 201, answer
        return bool(answer["status"].get("allowed"))

    assert allowed("list", "pods", ns) and allowed("get", "pods", ns) and allowed("get", "pods", ns, "log")
    for verb, resource, where, sub in [("create", "pods", ns, ""), ("delete", "pods", ns, ""), ("watch", "pods", ns, ""),
                                       ("create", "pods", ns, "exec"), ("get", "secrets", ns, ""),
                                       ("get", "configmaps", ns, ""), ("list", "pods", "default", ""),
                                       ("get", "pods", "default", "log")]:
        assert not allowed(verb, resource, where, sub), (verb, resource, where, sub)
