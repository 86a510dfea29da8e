"""The Polyaxonfile document model (POLYFLOW §1–§4, §6–§8) as msgspec Structs.

Field names are the Python spelling; YAML keys are their camelCase (``rename="camel"``), so
``msgspec.to_builtins(spec)`` writes a Polyaxonfile back. Values are exactly what the YAML
said after the schema rules of :mod:`flowd.spec.schema` were applied (short-form params
expanded, lax booleans read, ``ops:`` shorthand folded into ``run``); nothing is resolved or
defaulted here. Most fields are optional, as in Polyaxon 2.18, where a component and an
operation share one model: :class:`PolyaxonfileSpec` is both (``ComponentSpec`` and
``OperationSpec`` are aliases that say which role a value plays).

Annotated ``Meta(extra=...)`` markers tell the schema walker about the reference's quirks:

* ``tpl``     a string that must contain a ``{{ }}`` template (``int | Tpl``: int or template)
* ``lax``     ``bool`` accepts yes/no/on/off/1/0; ``float`` numeric strings; ``posint`` "2"/2.0
* ``split``   a list of strings that may be written as one comma-separated string
* ``keys``    a Kubernetes object kept as a dict whose keys are checked against a known set
* ``name``    the name regex ``^[-a-zA-Z0-9_]+$`` (or a template)
* ``when``    a datetime (YAML timestamp or ISO string) or a template
* ``number``  a version number (any number; a warning unless 1 or 1.1)

No logic lives here besides the declarations.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

import msgspec
from msgspec import Meta, field

__all__ = [
    "PolyaxonfileSpec", "ComponentSpec", "OperationSpec", "IO", "Validation", "Param", "JoinParam",
    "Cache", "Termination", "Backoff", "Plugins", "Build", "Template", "Mount", "Hook", "Join",
    "EventTrigger", "Environment", "Init", "Runtime", "JobRuntime", "ServiceRuntime", "DagRuntime",
    "TFJobRuntime", "PytorchJobRuntime", "MPIJobRuntime", "DaskClusterRuntime", "RayClusterRuntime",
    "NotifierRuntime", "CleanerRuntime", "TunerRuntime", "Replica", "RayReplica", "Matrix",
    "MappingMatrix", "GridMatrix", "RandomMatrix", "HyperbandMatrix", "BayesMatrix", "TpeMatrix",
    "IterativeMatrix", "HpParam", "HP_KINDS", "EarlyStopping", "FailureEarlyStopping",
    "MetricEarlyStopping", "Schedule", "CronSchedule", "IntervalSchedule", "DateTimeSchedule",
    "TRIGGERS", "EVENT_KINDS", "RUN_KINDS", "CONTAINER_KEYS", "K8S_KEYS", "K8S_KEYSETS",
]

Tpl = Annotated[str, Meta(extra={"tpl": True})]
LaxBool = Annotated[bool, Meta(extra={"lax": "bool"})]
LaxFloat = Annotated[float, Meta(extra={"lax": "float"})]
LaxPosInt = Annotated[int, Meta(extra={"lax": "posint"})]
PosInt = Annotated[int, Meta(gt=0)]
SplitList = Annotated[list[str], Meta(extra={"split": True})]
Name = Annotated[str, Meta(extra={"name": True})]
When = Annotated[Any, Meta(extra={"when": True})]
Number = Annotated[Any, Meta(extra={"number": True})]
Container = Annotated[dict[str, Any], Meta(extra={"keys": "container"})]
Toleration = Annotated[dict[str, Any], Meta(extra={"keys": "toleration"})]
Affinity = Annotated[dict[str, Any], Meta(extra={"keys": "affinity"})]
SecurityContext = Annotated[dict[str, Any], Meta(extra={"keys": "securityContext"})]
Volume = Annotated[dict[str, Any], Meta(extra={"keys": "volume"})]
HostAlias = Annotated[dict[str, Any], Meta(extra={"keys": "hostAlias"})]
# label-like maps: any scalar values, but not null
Labels = Annotated[dict[str, Any], Meta(extra={"nonnull": True})]
Anything = Any

TRIGGERS = ("all_succeeded", "all_failed", "all_done", "one_succeeded", "one_failed", "one_done")
Trigger = Literal["all_succeeded", "all_failed", "all_done", "one_succeeded", "one_failed", "one_done"]

EVENT_KINDS = (
    "run_status_created", "run_status_resuming", "run_status_compiled", "run_status_on_schedule",
    "run_status_queued", "run_status_scheduled", "run_status_starting", "run_status_running",
    "run_status_processing", "run_status_stopping", "run_status_failed", "run_status_stopped",
    "run_status_succeeded", "run_status_skipped", "run_status_warning", "run_status_unschedulable",
    "run_status_upstream_failed", "run_status_retrying", "run_status_unknown", "run_status_done",
    "run_approved_actor", "run_invalidated_actor", "run_new_artifacts", "connection_git_commit",
    "connection_dataset_version", "connection_registry_image", "alert_info", "alert_warning",
    "alert_critical", "model_version_new_metric", "project_custom_event", "org_custom_event",
)
EventKind = Literal[
    "run_status_created", "run_status_resuming", "run_status_compiled", "run_status_on_schedule",
    "run_status_queued", "run_status_scheduled", "run_status_starting", "run_status_running",
    "run_status_processing", "run_status_stopping", "run_status_failed", "run_status_stopped",
    "run_status_succeeded", "run_status_skipped", "run_status_warning", "run_status_unschedulable",
    "run_status_upstream_failed", "run_status_retrying", "run_status_unknown", "run_status_done",
    "run_approved_actor", "run_invalidated_actor", "run_new_artifacts", "connection_git_commit",
    "connection_dataset_version", "connection_registry_image", "alert_info", "alert_warning",
    "alert_critical", "model_version_new_metric", "project_custom_event", "org_custom_event",
]

# Top-level keys of the Kubernetes objects flowd carries as dicts (kubernetes client 36's
# attribute maps); the snake_case spellings, which the reference also reads, are added below.
K8S_KEYS: dict[str, tuple[str, ...]] = {
    "container": (
        "name", "image", "command", "args", "workingDir", "ports", "envFrom", "env", "resources",
        "volumeMounts", "volumeDevices", "livenessProbe", "readinessProbe", "startupProbe", "lifecycle",
        "terminationMessagePath", "terminationMessagePolicy", "imagePullPolicy", "securityContext", "stdin",
        "stdinOnce", "tty", "resizePolicy", "restartPolicy", "restartPolicyRules",
    ),
    "toleration": ("effect", "key", "operator", "tolerationSeconds", "value"),
    "affinity": ("nodeAffinity", "podAffinity", "podAntiAffinity"),
    "securityContext": (
        "allowPrivilegeEscalation", "appArmorProfile", "capabilities", "privileged", "procMount",
        "readOnlyRootFilesystem", "runAsGroup", "runAsNonRoot", "runAsUser", "seLinuxOptions", "seccompProfile",
        "windowsOptions",
    ),
    "volume": (
        "name", "awsElasticBlockStore", "azureDisk", "azureFile", "cephfs", "cinder", "configMap", "csi",
        "downwardAPI", "emptyDir", "ephemeral", "fc", "flexVolume", "flocker", "gcePersistentDisk", "gitRepo",
        "glusterfs", "hostPath", "image", "iscsi", "nfs", "persistentVolumeClaim", "photonPersistentDisk",
        "portworxVolume", "projected", "quobyte", "rbd", "scaleIO", "secret", "storageos", "vsphereVolume",
    ),
    "hostAlias": ("hostnames", "ip"),
}


def _with_snake(names: tuple[str, ...]) -> frozenset[str]:
    import re

    return frozenset(names) | {re.sub(r"(?<!^)(?=[A-Z])", "_", n).lower() for n in names}


K8S_KEYSETS: dict[str, frozenset[str]] = {k: _with_snake(v) for k, v in K8S_KEYS.items()}
CONTAINER_KEYS = K8S_KEYSETS["container"]


class _S(msgspec.Struct, kw_only=True, omit_defaults=True, rename="camel", forbid_unknown_fields=True):
    pass


class _Tagged(_S, tag_field="kind"):
    pass


# --- IO ------------------------------------------------------------------------------------


class Validation(_S):
    delay: LaxBool | None = None
    gt: float | Tpl | None = None
    ge: float | Tpl | None = None
    lt: float | Tpl | None = None
    le: float | Tpl | None = None
    multiple_of: float | Tpl | None = None
    min_digits: int | Tpl | None = None
    max_digits: int | Tpl | None = None
    decimal_places: int | Tpl | None = None
    regex: str | None = None
    min_length: int | Tpl | None = None
    max_length: int | Tpl | None = None
    contains: Anything = None
    excludes: Anything = None
    options: list[Any] | Tpl | None = None
    min_items: int | Tpl | None = None
    max_items: int | Tpl | None = None
    keys: list[str] | None = None
    contains_keys: list[str] | None = None
    excludes_keys: list[str] | None = None


class IO(_S):
    """An input or output declaration (POLYFLOW §2.1)."""

    name: str
    description: str | None = None
    type: str | None = None
    # UNSET when the YAML has no ``value`` key; a present key, even null, makes the IO optional (§2.3)
    value: Anything = msgspec.UNSET
    is_optional: LaxBool | None = None
    is_list: LaxBool | None = None
    is_flag: LaxBool | None = None
    arg_format: str | None = None
    connection: str | None = None
    to_init: LaxBool | None = None
    to_env: str | None = None
    validation: Validation | None = None
    delay_validation: LaxBool | None = None


class Param(_S):
    """A param in full form (§3.2); the short form ``lr: 0.05`` is read as ``{value: 0.05}``."""

    value: Anything = None
    ref: str | None = None
    context_only: LaxBool | None = None
    connection: str | None = None
    to_init: LaxBool | None = None
    to_env: str | None = None


class JoinParam(Param):
    """A join param: full form only (``{value: outputs.loss}``); ``ref`` is accepted and unused."""


class FullParam(Param):
    """A param that must be written in full form (``build``, ``hooks``, ``tuner`` params)."""


# --- helper sections -------------------------------------------------------------------------


class Cache(_S):
    disable: LaxBool | Tpl | None = None
    ttl: int | Tpl | None = None
    io: list[str] | Tpl | None = None
    sections: list[Literal["containers", "init", "connections"]] | Tpl | None = None


class Backoff(_S):
    """flowd extension: delay between retries (see ``flowd.spec.compiled.Backoff``)."""

    base: float | None = None
    factor: float | None = None
    max: float | None = None
    jitter: float | None = None


class Termination(_S):
    max_retries: int | Tpl | None = None
    ttl: int | Tpl | None = None
    timeout: int | Tpl | None = None
    culling: dict[str, Any] | None = None
    probe: dict[str, Any] | None = None
    pod_failure_policy: dict[str, Any] | None = None
    backoff: Backoff | None = None


class Plugins(_S):
    auth: LaxBool | Tpl | None = None
    docker: LaxBool | Tpl | None = None
    shm: LaxBool | Tpl | None = None
    tmux: LaxBool | Tpl | None = None
    sandbox: LaxBool | Tpl | None = None
    ssh: LaxBool | Tpl | None = None
    mount_artifacts_store: LaxBool | Tpl | None = None
    collect_artifacts: LaxBool | Tpl | None = None
    collect_logs: LaxBool | Tpl | None = None
    collect_resources: LaxBool | Tpl | None = None
    sync_statuses: LaxBool | Tpl | None = None
    auto_resume: LaxBool | Tpl | None = None
    external_host: LaxBool | Tpl | None = None
    log_level: str | None = None
    sidecar: dict[str, Any] | None = None
    notifications: list[dict[str, Any]] | None = None


class Build(_S):
    hub_ref: str
    connection: str | None = None
    presets: SplitList | None = None
    queue: str | None = None
    namespace: str | None = None
    cache: Cache | Tpl | None = None
    params: dict[str, FullParam] | None = None
    run_patch: dict[str, Any] | None = None
    patch_strategy: Literal["replace", "isnull", "post_merge", "pre_merge"] | None = None


class Template(_S):
    enabled: LaxBool | Tpl | None = None
    description: str | None = None
    fields: list[str] | None = None


class Mount(_S):
    from_: str | None = field(default=None, name="from")
    to: str | None = None


class Hook(_S):
    hub_ref: str
    connection: str | None = None
    trigger: Literal["succeeded", "failed", "stopped", "skipped", "upstream_failed", "done"] | None = None
    conditions: str | None = None
    presets: SplitList | None = None
    queue: str | None = None
    namespace: str | None = None
    params: dict[str, FullParam] | None = None
    disable_defaults: LaxBool | Tpl | None = None


class Join(_S):
    query: str
    sort: str | None = None
    limit: int | Tpl | None = None
    offset: int | Tpl | None = None
    params: dict[str, JoinParam] | None = None
    ref: str | None = None


class EventTrigger(_S):
    ref: str
    kinds: list[EventKind | Tpl]


# --- runtimes (§1.9); Kubernetes bodies are dicts ----------------------------------------------


class Environment(_S):
    labels: Labels | None = None
    annotations: Labels | None = None
    node_selector: Labels | None = None
    affinity: Affinity | None = None
    tolerations: list[Toleration] | None = None
    node_name: str | None = None
    service_account_name: str | None = None
    host_aliases: list[HostAlias] | None = None
    security_context: SecurityContext | None = None
    image_pull_secrets: list[str] | None = None
    host_network: LaxBool | None = None
    host_pid: LaxBool | None = field(default=None, name="hostPID")
    dns_policy: str | None = None
    dns_config: dict[str, Any] | None = None
    scheduler_name: str | None = None
    priority_class_name: str | None = None
    priority: int | None = None
    restart_policy: Literal["Always", "OnFailure", "Never", "ExitCode"] | None = None


class Init(_S):
    artifacts: Annotated[Any, Meta(extra={"object": "artifacts"})] = None
    paths: list[Any] | None = None
    git: Annotated[Any, Meta(extra={"object": "git"})] = None
    dockerfile: Annotated[Any, Meta(extra={"object": "dockerfile"})] = None
    file: Annotated[Any, Meta(extra={"object": "file"})] = None
    tensorboard: Annotated[Any, Meta(extra={"object": "tensorboard"})] = None
    lineage_ref: str | None = None
    model_ref: str | None = None
    artifact_ref: str | None = None
    connection: str | None = None
    path: str | None = None
    container: Container | None = None


class _PodBody(_S):
    environment: Environment | Tpl | None = None
    connections: list[str] | Tpl | None = None
    volumes: list[Volume] | None = None
    init: list[Init] | Tpl | None = None
    sidecars: list[Container] | None = None
    container: Container | None = None


class Replica(_PodBody):
    replicas: int | Tpl | None = None


class RayReplica(Replica):
    min_replicas: int | Tpl | None = None
    max_replicas: int | Tpl | None = None
    ray_start_params: dict[str, Any] | None = None


class JobRuntime(_Tagged, tag="job"):
    environment: Environment | Tpl | None = None
    connections: list[str] | Tpl | None = None
    volumes: list[Volume] | None = None
    init: list[Init] | Tpl | None = None
    sidecars: list[Container] | None = None
    container: Container | None = None


class NotifierRuntime(JobRuntime, tag="notifier"):
    pass


class CleanerRuntime(JobRuntime, tag="cleaner"):
    pass


class TunerRuntime(JobRuntime, tag="tuner"):
    pass


class ServiceRuntime(JobRuntime, tag="service"):
    ports: list[int] | Tpl | None = None
    rewrite_path: LaxBool | None = None
    is_external: LaxBool | None = None
    replicas: int | Tpl | None = None


class _Distributed(_Tagged):
    clean_pod_policy: str | None = None
    scheduling_policy: dict[str, Any] | None = None


class TFJobRuntime(_Distributed, tag="tfjob"):
    chief: Replica | Tpl | None = None
    ps: Replica | Tpl | None = None
    worker: Replica | Tpl | None = None
    evaluator: Replica | Tpl | None = None
    enable_dynamic_worker: LaxBool | None = None
    success_policy: str | None = None


class PytorchJobRuntime(_Distributed, tag="pytorchjob"):
    master: Replica | Tpl | None = None
    worker: Replica | Tpl | None = None
    elastic_policy: dict[str, Any] | None = None
    n_proc_per_node: int | str | None = None


class MPIJobRuntime(_Distributed, tag="mpijob"):
    launcher: Replica | Tpl | None = None
    worker: Replica | Tpl | None = None
    slots_per_worker: int | None = None


class DaskClusterRuntime(_Tagged, tag="daskcluster"):
    worker: Replica | Tpl | None = None
    scheduler: Replica | Tpl | None = None
    min_replicas: int | Tpl | None = None
    max_replicas: int | Tpl | None = None


class RayClusterRuntime(_Tagged, tag="raycluster"):
    head: RayReplica | Tpl | None = None
    workers: dict[str, RayReplica] | None = None
    entrypoint: str | None = None
    runtime_env: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    ray_version: str | None = None
    autoscaler_options: dict[str, Any] | None = None
    enable_in_tree_autoscaling: LaxBool | None = None


# --- early stopping (§7) -------------------------------------------------------------------


class MedianPolicy(_Tagged, tag="median"):
    evaluation_interval: int | None = None
    min_interval: int | None = None
    min_samples: int | None = None


class TruncationPolicy(_Tagged, tag="truncation"):
    percent: LaxFloat
    evaluation_interval: int
    min_interval: int | None = None
    min_samples: int | None = None
    include_succeeded: LaxBool | None = None


class DiffPolicy(_Tagged, tag="diff"):
    percent: LaxFloat
    evaluation_interval: int
    min_interval: int | None = None
    min_samples: int | None = None


class FailureEarlyStopping(_Tagged, tag="failure_early_stopping"):
    percent: LaxFloat | Tpl


class MetricEarlyStopping(_Tagged, tag="metric_early_stopping"):
    metric: str
    value: LaxFloat | Tpl
    optimization: Literal["maximize", "minimize"] | float
    policy: MedianPolicy | TruncationPolicy | DiffPolicy | None = None


EarlyStopping = FailureEarlyStopping | MetricEarlyStopping

# --- matrix (§6) ------------------------------------------------------------------------------

HP_KINDS = (
    "choice", "pchoice", "range", "linspace", "logspace", "geomspace", "daterange", "datetimerange",
    "uniform", "quniform", "loguniform", "qloguniform", "normal", "qnormal", "lognormal", "qlognormal",
)
# `value` is required for choice and datetimerange only (as in the reference's models)
_hp_classes = tuple(
    msgspec.defstruct(
        "Hp" + k.capitalize(),
        [("value", Any)] if k in ("choice", "datetimerange") else [("value", Any, None)],
        bases=(_Tagged,), tag=k, module=__name__,
    )
    for k in HP_KINDS
)
for _cls in _hp_classes:
    globals()[_cls.__name__] = _cls
HpParam = Union[_hp_classes]  # type: ignore[valid-type]  # noqa: UP007 - built from a tuple of classes


class MatrixMetric(_S):
    name: str
    optimization: Literal["maximize", "minimize"] | None = None


class Resource(_S):
    name: str
    type: Literal["int", "float"] | None = None


class Tuner(_S):
    hub_ref: str
    presets: SplitList | None = None
    queue: str | None = None
    namespace: str | None = None
    params: dict[str, FullParam] | None = None


class GaussianProcess(_S):
    kernel: Literal["matern", "rbf"] | None = None
    length_scale: LaxFloat | None = None
    nu: LaxFloat | None = None
    num_restarts_optimizer: int | None = None


class UtilityFunction(_S):
    acquisition_function: Literal["ucb", "ei", "poi"] | None = None
    kappa: LaxFloat | None = None
    eps: LaxFloat | None = None
    gaussian_process: GaussianProcess | None = None
    num_warmup: int | None = None
    num_iterations: int | None = None


class MappingMatrix(_Tagged, tag="mapping"):
    values: list[dict[str, Any]] | Tpl
    concurrency: LaxPosInt | Tpl | None = None
    early_stopping: list[EarlyStopping] | Tpl | None = None


class GridMatrix(_Tagged, tag="grid"):
    params: dict[str, HpParam]
    num_runs: PosInt | None = None
    concurrency: PosInt | None = None
    early_stopping: list[EarlyStopping] | Tpl | None = None


class RandomMatrix(_Tagged, tag="random"):
    params: dict[str, HpParam] | Tpl
    num_runs: PosInt
    seed: int | Tpl | None = None
    concurrency: PosInt | None = None
    early_stopping: list[EarlyStopping] | Tpl | None = None


class HyperbandMatrix(_Tagged, tag="hyperband"):
    params: dict[str, HpParam] | None = None
    max_iterations: PosInt | None = None
    eta: LaxFloat | Tpl | None = None
    resource: Resource | None = None
    metric: MatrixMetric | None = None
    resume: LaxBool | None = None
    seed: int | Tpl | None = None
    concurrency: LaxPosInt | Tpl | None = None
    tuner: Tuner | None = None
    early_stopping: list[EarlyStopping] | Tpl | None = None


class BayesMatrix(_Tagged, tag="bayes"):
    params: dict[str, HpParam]
    num_initial_runs: PosInt
    max_iterations: LaxPosInt | Tpl
    metric: MatrixMetric
    utility_function: UtilityFunction | None = None
    seed: int | Tpl | None = None
    concurrency: LaxPosInt | Tpl | None = None
    tuner: Tuner | Tpl | None = None
    early_stopping: list[EarlyStopping] | Tpl | None = None


class TpeMatrix(_Tagged, tag="tpe"):
    params: dict[str, HpParam] | Tpl
    metric: MatrixMetric
    num_runs: PosInt | None = None
    max_iterations: int | Tpl | None = None
    seed: int | Tpl | None = None
    concurrency: PosInt | None = None
    tuner: Tuner | None = None
    early_stopping: list[EarlyStopping] | Tpl | None = None


class IterativeMatrix(_Tagged, tag="iterative"):
    max_iterations: PosInt
    params: dict[str, HpParam] | Tpl | None = None
    seed: int | Tpl | None = None
    concurrency: PosInt | None = None
    tuner: Tuner | None = None
    early_stopping: list[EarlyStopping] | Tpl | None = None


Matrix = MappingMatrix | GridMatrix | RandomMatrix | HyperbandMatrix | BayesMatrix | TpeMatrix | IterativeMatrix

# --- schedules (§8.1) -----------------------------------------------------------------------


class CronSchedule(_Tagged, tag="cron"):
    cron: str
    start_at: When = None
    end_at: When = None
    max_runs: int | Tpl | None = None
    depends_on_past: LaxBool | Tpl | None = None
    # flowd extensions: the IANA zone the cron fields are read in (default UTC), and whether
    # ticks missed during downtime all run (true, Polyaxon's rule) or only the latest one
    timezone: str | None = None
    catch_up: LaxBool | None = None


class IntervalSchedule(_Tagged, tag="interval"):
    frequency: Annotated[Any, Meta(extra={"duration": True})]
    start_at: When = None
    end_at: When = None
    max_runs: int | Tpl | None = None
    depends_on_past: LaxBool | Tpl | None = None
    catch_up: LaxBool | None = None  # flowd extension, see CronSchedule


class DateTimeSchedule(_Tagged, tag="datetime"):
    start_at: When


Schedule = CronSchedule | IntervalSchedule | DateTimeSchedule

# --- DAG and the file itself -------------------------------------------------------------------


class DagRuntime(_Tagged, tag="dag"):
    operations: list[PolyaxonfileSpec] | None = None
    components: list[PolyaxonfileSpec] | None = None
    environment: Environment | Tpl | None = None
    connections: list[str] | Tpl | None = None
    volumes: list[Volume] | None = None
    concurrency: LaxPosInt | Tpl | None = None
    early_stopping: list[EarlyStopping] | Tpl | None = None


Runtime = (
    JobRuntime | ServiceRuntime | DagRuntime | DaskClusterRuntime | RayClusterRuntime | MPIJobRuntime
    | TFJobRuntime | PytorchJobRuntime | NotifierRuntime | CleanerRuntime | TunerRuntime
)
RUN_KINDS = ("job", "service", "dag", "daskcluster", "raycluster", "mpijob", "tfjob", "pytorchjob",
             "notifier", "cleaner", "tuner")


class PolyaxonfileSpec(_S):
    """A component, an operation or a kindless file: one model, as in Polyaxon 2.18 (§1.2–§1.4)."""

    version: Number = None
    kind: Literal["component", "operation"] | None = None
    name: Name | Tpl | None = None
    description: str | None = None
    tags: SplitList | None = None
    presets: SplitList | None = None
    strict_params: LaxBool | None = None
    queue: str | None = None
    namespace: str | None = None
    cache: Cache | Tpl | None = None
    termination: Termination | Tpl | None = None
    plugins: Plugins | Tpl | None = None
    build: Build | Tpl | None = None
    hooks: list[Hook] | Tpl | None = None
    is_approved: LaxBool | Tpl | None = None
    cost: LaxFloat | Tpl | None = None
    mount: list[str | Mount] | None = None
    template: Template | None = None
    inputs: list[IO] | None = None
    outputs: list[IO] | None = None
    # a Runtime, or (on an op with a reference) a partial runtime mapping without `kind` (§1.3)
    run: Annotated[Any, Meta(extra={"runtime": True})] = None
    # operation fields (§1.3)
    params: dict[str, Param] | None = None
    hub_ref: str | None = None
    dag_ref: str | None = None
    url_ref: str | None = None
    path_ref: str | None = None
    component: PolyaxonfileSpec | None = None
    run_patch: dict[str, Any] | None = None
    patch_strategy: Literal["replace", "isnull", "post_merge", "pre_merge"] | None = None
    is_preset: LaxBool | None = None
    dependencies: list[str] | Tpl | None = None
    trigger: Trigger | Tpl | None = None
    conditions: str | None = None
    skip_on_upstream_skip: LaxBool | None = None
    matrix: Matrix | None = None
    joins: list[Join] | Tpl | None = None
    schedule: Schedule | None = None
    events: list[EventTrigger] | Tpl | None = None
    # root shortcuts (§1.4)
    ports: list[int] | None = None
    container: Container | None = None
    cmd: Annotated[Any, Meta(extra={"cmd": True})] = None
    env: dict[str, str] | None = None
    resources: Annotated[dict[str, Any], Meta(extra={"resources": True})] | None = None
    environment: Environment | None = None
    init: list[Init] | None = None
    connections: list[str] | Tpl | None = None
    sidecars: list[Container] | None = None
    volumes: list[Volume] | None = None


ComponentSpec = PolyaxonfileSpec
OperationSpec = PolyaxonfileSpec

SHORTCUTS = ("ports", "container", "cmd", "env", "resources", "environment", "init", "connections",
             "sidecars", "volumes")
REFERENCE_FIELDS = ("hub_ref", "dag_ref", "url_ref", "path_ref")
