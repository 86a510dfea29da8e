"""Composition: an operation over its component (POLYFLOW §1.5, §1.6, §1.4, §2.3).

:class:`Composer` turns an op (or a component, or a whole file) into an :class:`Effective`
component: the referenced component (inline ``component``, ``dagRef``, ``pathRef``,
``urlRef``, ``hubRef``, resolved recursively with cycle detection), with the op's fields patched
over it by ``patchStrategy``, then the op's ``run``, the root shortcuts and ``runPatch``.
It also checks IO declarations (§2.3) and converts them to :class:`~flowd.spec.compiled.IOSpec`.

Every problem becomes a finding; nothing raises for bad input. Results are cached by object
identity, so a component used by 10,000 ops is composed once.
"""

from __future__ import annotations

import os
from typing import Any

import msgspec

from flowd.spec import model as m
from flowd.spec import refs
from flowd.spec.compiled import IOSpec
from flowd.spec.diagnostics import Finding, Sources, did_you_mean
from flowd.spec.limits import Limits, over
from flowd.spec.params import template_refs as _template_refs
from flowd.spec.schema import BAD, Reader
from flowd.spec.shortcuts import lower_resources
from flowd.spec.types import CoercionError, coerce, known_type, type_names
from flowd.spec.yamlio import YamlLimitError, YamlSyntaxError, load_text

__all__ = ["Composer", "Effective", "Doc", "PATCHED"]

# op fields patched over the component with the patch strategy (§1.6 step 2)
PATCHED = ("description", "tags", "presets", "queue", "namespace", "cache", "termination", "plugins", "build",
           "hooks", "is_approved", "cost", "mount", "template", "inputs", "outputs")
_RESERVED_IO = {"globals", "params", "connections"}
_PATCHED_SET = frozenset(PATCHED)
_SHORTCUT_SET = frozenset(m.SHORTCUTS)


class Doc:
    """A document read during compilation."""

    __slots__ = ("source", "base_dir", "spec")

    def __init__(self, source: str, base_dir: str | None, spec: m.PolyaxonfileSpec | None) -> None:
        self.source = source
        self.base_dir = base_dir
        self.spec = spec


class Effective:
    """A composed component: the merged fields, the runtime, and where its DAG body lives."""

    __slots__ = ("spec", "run", "source", "base_dir", "inputs", "outputs", "strict", "cache_slot", "label")

    def __init__(self, spec: m.PolyaxonfileSpec, run: Any, source: str, base_dir: str | None,
                 inputs: list[IOSpec], outputs: list[IOSpec], strict: bool, label: str | None) -> None:
        self.spec = spec  # merged values of the PATCHED fields (and name)
        self.run = run
        self.source = source  # the document the runtime was written in (for its pathRefs)
        self.base_dir = base_dir
        self.inputs = inputs
        self.outputs = outputs
        self.strict = strict
        self.cache_slot: dict[Any, Any] = {}
        self.label = label  # hub name, path or URL it came from

    @property
    def kind(self) -> str | None:
        if self.run is None:
            return None
        tag = type(self.run).__struct_config__.tag
        return tag if isinstance(tag, str) else None


def binds_inner_output(value: str) -> bool:
    """Is this output ``value`` a binding to an inner op of a DAG (``{{ ops.X... }}``)?"""
    return "{{" in value and "ops." in value and any(r.ns == "ops" for r in _template_refs(value))


def _merge(base: Any, over: Any, strategy: str) -> Any:
    """§1.6 patch semantics, op (``over``) onto component (``base``)."""
    if base is None:
        return over
    if over is None:
        return base
    if isinstance(base, msgspec.Struct) and isinstance(over, msgspec.Struct) and type(base) is type(over):
        merged = _merge(msgspec.to_builtins(base), msgspec.to_builtins(over), strategy)
        return msgspec.convert(merged, type(base))
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            if k in out:
                out[k] = _merge(out[k], v, strategy)
            else:
                out[k] = v
        return out
    if isinstance(base, list) and isinstance(over, list):
        if strategy == "post_merge":
            return base + over
        if strategy == "pre_merge":
            return over + base
        if strategy == "replace":
            return over
        return base  # isnull
    return over if strategy in ("post_merge", "replace") else base


class Composer:
    def __init__(self, *, hub: str | None, findings: list[Finding], where: dict[int, Any], sources: Sources,
                 url_timeout: float = refs.URL_TIMEOUT, reference_compat: bool = False,
                 url_fetcher: refs.UrlFetcher | None = None,
                 limits: Limits | None = None, presets: str | None = None) -> None:
        self.hub = hub
        self.limits = limits or Limits()
        self.presets = presets  # folder of named presets (`presets: [name]`), laid out like the hub
        self.findings = findings
        self.where = where
        self.sources = sources
        self.url_timeout = url_timeout
        # who reads a urlRef: refs.fetch_url (flowd check/run), or the daemon's own (documents
        # fetched beforehand under its allowlist: flowd.daemon.urlrefs)
        self.url_fetcher = url_fetcher
        self.compat = reference_compat
        self._docs: dict[str, Doc | None] = {}
        self._ref_stack: list[str] = []
        self._eff: dict[Any, Effective | None] = {}
        self._io: dict[int, list[IOSpec]] = {}
        self._checked_runtimes: set[int] = set()
        self.shorthand: set[int] = set()  # DagRuntimes written as `ops:` (see schema.Reader)
        self.present: dict[int, Any] = {}  # fields set on each PolyaxonfileSpec read (see schema.Reader)
        self._names: dict[str, str] = {}  # reference key -> display name
        self._prefixes: set[tuple[str, tuple[Any, ...]]] = set()
        self._scanned = 0  # findings already folded into _prefixes

    # -- reporting ----------------------------------------------------------------------------

    def at(self, obj: Any, *extra: Any) -> tuple[str, tuple[Any, ...]]:
        src, path = self.where.get(id(obj), ("<unknown>", ()))
        return src, (*path, *extra)

    def emit(self, severity: str, where: tuple[str, tuple[Any, ...]], message: str) -> None:
        self.findings.append(Finding(severity, where[0], where[1], message))  # type: ignore[arg-type]

    def error_prefixes(self) -> set[tuple[str, tuple[Any, ...]]]:
        """(source, path prefix) of every error so far (folded in incrementally: findings only grow)."""
        findings = self.findings
        for f in findings[self._scanned:]:
            if f.severity == "error":
                for k in range(len(f.path) + 1):
                    self._prefixes.add((f.source, tuple(f.path[:k])))
        self._scanned = len(findings)
        return self._prefixes

    # -- documents ------------------------------------------------------------------------------

    def parse(self, text: str, source: str, base_dir: str | None) -> Doc:
        self.sources.add(source, text)
        size = text_bytes(text, self.limits.max_spec_bytes)
        if size > self.limits.max_spec_bytes:
            self.findings.append(Finding("error", source, (), str(over(
                "the file is", size, "bytes", setting="max_spec_bytes", limit=self.limits.max_spec_bytes)),
                locate=False))
            return Doc(source, base_dir, None)
        try:
            data = load_text(text, self.limits)
        except YamlLimitError as exc:
            self.findings.append(Finding("error", source, (), exc.message, line=exc.line, column=exc.column,
                                         locate=exc.line is not None))
            return Doc(source, base_dir, None)
        except YamlSyntaxError as exc:
            hint = " (check the indentation)" if "expected key" in exc.message or "not allowed here" in exc.message \
                or "mapping values are not allowed" in exc.message else ""
            self.findings.append(Finding("error", source, (), f"invalid YAML: {exc.message}{hint}", line=exc.line,
                                         column=exc.column, locate=exc.line is not None))
            return Doc(source, base_dir, None)
        spec = Reader(source, self.findings, self.where, self.shorthand, self.present).read_root(data)
        return Doc(source, base_dir, spec)

    def _load_ref(self, kind: str, ref: str, op: m.PolyaxonfileSpec, base_dir: str | None) -> tuple[Doc, str] | None:
        where = self.at(op, {"path_ref": "pathRef", "url_ref": "urlRef", "hub_ref": "hubRef"}[kind])
        try:
            max_bytes = self.limits.max_spec_bytes
            if kind == "path_ref":
                loc = refs.locate_path(ref, base_dir, max_bytes=max_bytes)
            elif kind == "hub_ref":
                loc = refs.locate_hub(ref, self.hub, max_bytes=max_bytes)
            else:
                loc = self.url_fetcher(ref) if self.url_fetcher else refs.fetch_url(ref, timeout=self.url_timeout, max_bytes=max_bytes)
        except refs.RefError as exc:
            self.emit("error", where, str(exc))
            return None
        self._names[loc.key] = loc.name
        if loc.key in self._docs:
            doc = self._docs[loc.key]
        else:
            before = len(self.findings)
            doc = self._docs[loc.key] = self.parse(loc.text, loc.name, loc.base_dir)
            errors = sum(1 for f in self.findings[before:] if f.severity == "error" and f.source == loc.name)
            if errors and doc.spec is not None:
                self.emit("error", where, f"the component referenced by `{ref}` (`{loc.name}`) has {errors} "
                                          "error(s), reported under its own path")
        if doc is None or doc.spec is None:
            self.emit("error", where, f"the component referenced by `{ref}` could not be resolved: `{loc.name}` is not valid")
            return None
        return doc, loc.key

    # -- composition -----------------------------------------------------------------------------

    def effective(self, op: m.PolyaxonfileSpec, *, source: str, base_dir: str | None,
                  components: dict[str, m.PolyaxonfileSpec] | None, dag_stack: tuple[str, ...] = (),
                  rule: Any = None) -> Effective | None:
        """Compose ``op`` over whatever it references. ``components`` is the enclosing DAG's
        ``components`` (None outside a DAG); ``rule`` reports DAG-rule findings (D8, D10)."""
        key = (id(op), id(components))
        if key in self._eff:
            return self._eff[key]
        eff = self._effective(op, source=source, base_dir=base_dir, components=components, dag_stack=dag_stack, rule=rule)
        self._eff[key] = eff
        return eff

    def _effective(self, op: m.PolyaxonfileSpec, *, source: str, base_dir: str | None,
                   components: dict[str, m.PolyaxonfileSpec] | None, dag_stack: tuple[str, ...],
                   rule: Any) -> Effective | None:
        rule = rule or (lambda where, msg: self.emit("error", where, msg))
        set_refs = [f for f in m.REFERENCE_FIELDS if getattr(op, f) is not None]
        if len(set_refs) > 1 and not op.is_preset:
            names = ", ".join(f"`{self._camel(f)}`" for f in set_refs)
            self.emit("error", self.at(op, self._camel(set_refs[1])), f"At most one reference is allowed ({names} are set)")
            return None
        base: Effective | None = None
        if op.component is not None:
            base = self.effective(op.component, source=source, base_dir=base_dir, components=components,
                                  dag_stack=dag_stack, rule=rule)
            if base is None:
                return None
        elif op.dag_ref is not None:
            name = op.dag_ref
            if components is None:
                rule(self.at(op, "dagRef"), f"`dagRef: {name}` is only valid for an op inside a DAG (it names an "
                                            "entry of the DAG's `components`)")
                return None
            if name not in components:
                known = list(components or {})
                hint = did_you_mean(name, known)
                rule(self.at(op, "dagRef"), f"op requires a component with name `{name}` in the DAG's `components`, "
                                            f"but there is none{hint}" + ("" if known else " (the DAG has no components)"))
                return None
            if name in dag_stack:
                chain = " -> ".join((*dag_stack, name))
                rule(self.at(op, "dagRef"), f"template reference cycle between components: {chain}")
                return None
            base = self.effective(components[name], source=source, base_dir=base_dir, components=components,
                                  dag_stack=(*dag_stack, name), rule=rule)
            if base is None:
                return None
        elif set_refs:
            kind = set_refs[0]
            ref = getattr(op, kind)
            loaded = self._load_ref(kind, ref, op, base_dir)
            if loaded is None:
                return None
            doc, rkey = loaded
            if rkey in self._ref_stack:
                chain = " -> ".join(self._names.get(k, k) for k in [*self._ref_stack[self._ref_stack.index(rkey):], rkey])
                self.emit("error", self.at(op, self._camel(kind)), f"Polyaxonfile reference cycle: {chain}")
                return None
            self._ref_stack.append(rkey)
            try:
                assert doc.spec is not None
                base = self.effective(doc.spec, source=doc.source, base_dir=doc.base_dir, components=None, rule=None)
            finally:
                self._ref_stack.pop()
            if base is None:
                return None
            base.label = base.label or f"{self._camel(kind)} {ref}"
        eff = self._patch(op, base, source=source, base_dir=base_dir)
        if op.presets and not op.is_preset:
            eff = self._apply_presets(op, eff)
        return eff

    def _apply_presets(self, op: m.PolyaxonfileSpec, eff: Effective) -> Effective:
        """[FLOWD] ``presets: [name, ...]``: each names ``DIR/name.yaml`` (``--presets DIR`` or
        ``FLOWD_PRESETS``, looked up like the hub), an ``isPreset: true`` overlay patched onto the
        composed op in order with its own ``patchStrategy`` (default ``pre_merge``: the op's own
        values win, the preset fills in the rest)."""
        names = op.presets if isinstance(op.presets, list) else [op.presets]
        where = self.at(op, "presets")
        if not self.presets:
            self.emit("warning", where, f"presets {', '.join(f'`{n}`' for n in names)} are not applied: no presets "
                                        "folder is configured (use `--presets DIR` or set FLOWD_PRESETS)")
            return eff
        for name in names:
            try:
                loc = refs.locate_hub(str(name), self.presets)
            except refs.RefError as exc:
                self.emit("error", where, str(exc).replace("hubRef", "preset").replace("component hub", "presets folder")
                          .replace("the hub", "the presets folder"))
                continue
            doc = self._docs.get(loc.key)
            if doc is None:
                doc = self._docs[loc.key] = self.parse(loc.text, loc.name, loc.base_dir)
            preset = doc.spec
            if preset is None:
                continue
            if not preset.is_preset:
                self.emit("warning", where, f"preset `{name}` (`{loc.name}`) does not say `isPreset: true`; applied anyway")
            if preset.patch_strategy is None:
                preset = msgspec.structs.replace(preset, patch_strategy="pre_merge", presets=None)
                self.present.pop(id(preset), None)
            else:
                preset = msgspec.structs.replace(preset, presets=None)
            eff = self._patch(preset, eff, source=loc.name, base_dir=loc.base_dir)
        return eff

    @staticmethod
    def _camel(name: str) -> str:
        head, *rest = name.split("_")
        return head + "".join(p.capitalize() for p in rest)

    def _patch(self, op: m.PolyaxonfileSpec, base: Effective | None, *, source: str, base_dir: str | None) -> Effective:
        strategy = op.patch_strategy or "post_merge"
        present = self.present.get(id(op))
        if present is not None:
            shortcuts = [s for s in present if s in _SHORTCUT_SET and getattr(op, s) is not None]
            patched = [f for f in present if f in _PATCHED_SET and getattr(op, f) is not None]
        else:
            shortcuts = [s for s in m.SHORTCUTS if getattr(op, s) is not None]
            patched = [f for f in PATCHED if getattr(op, f) is not None]
        if base is not None and not patched and op.run is None and not shortcuts and op.run_patch is None \
                and not op.strict_params:
            return base  # the common case: an op that only binds params
        if base is None:
            spec = op
            run = op.run
            run_src, run_dir = source, base_dir
            if isinstance(run, dict):
                self.emit("error", self.at(op, "run"), "run.kind must be provided locally or by a referenced base "
                                                       "(a `run` without `kind` patches a referenced component)")
                run = None
        else:
            changes = {f: _merge(getattr(base.spec, f), getattr(op, f), strategy) for f in patched}
            spec = msgspec.structs.replace(base.spec, **changes) if changes else base.spec
            run, run_src, run_dir = base.run, base.source, base.base_dir
            if op.run is not None:
                patch = op.run if isinstance(op.run, dict) else msgspec.to_builtins(op.run)
                if run is not None:
                    run = self._patch_run(run, patch, op, strategy, "run")
                elif isinstance(op.run, dict):
                    self.emit("error", self.at(op, "run"), "run.kind must be provided locally or by a referenced base")
                else:
                    run = op.run
                run_src, run_dir = source, base_dir
        if shortcuts:
            run = self._apply_shortcuts(run, op, shortcuts, strategy)
        if op.run_patch is not None:
            if run is None:
                self.emit("error", self.at(op, "runPatch"), "`runPatch` requires a runtime to patch, but the op has no `run`")
            else:
                run = self._patch_run(run, op.run_patch, op, strategy, "runPatch")
        inputs = self.io_specs(spec.inputs, is_output=False)
        outputs = self.io_specs(spec.outputs, is_output=True)
        strict = bool(op.strict_params) or bool(base.strict if base else False)
        if base is not None and spec is not base.spec and "inputs" not in patched and "outputs" not in patched:
            inputs, outputs = base.inputs, base.outputs
        return Effective(spec, run, run_src, run_dir, inputs, outputs, strict, base.label if base else None)

    def _reread_run(self, data: dict[str, Any], op: m.PolyaxonfileSpec, what: str) -> Any:
        trial: list[Finding] = []
        r = Reader(self.at(op)[0], trial, self.where, self.shorthand, self.present)
        result = r.read(data, m.Runtime, (*self.at(op)[1], what))
        errors = [f for f in trial if f.severity == "error"]
        if errors or result is BAD:
            kind = data.get("kind")
            for f in errors:
                self.emit("error", self.at(op, what), f"invalid `{what}` for a `{kind}` runtime: {f.message}")
            return None
        return result

    def _patch_run(self, run: Any, patch: dict[str, Any], op: m.PolyaxonfileSpec, strategy: str, what: str) -> Any:
        base = msgspec.to_builtins(run)
        if patch.get("kind") not in (None, base.get("kind")) and what == "runPatch":
            self.emit("error", self.at(op, what, "kind"), f"`runPatch` cannot change the runtime kind "
                                                          f"(`{base.get('kind')}` to `{patch.get('kind')}`)")
            return run
        merged = _merge(base, {k: v for k, v in patch.items() if k != "kind" or what == "run"}, strategy)
        if what == "run" and patch.get("kind") is not None:
            merged["kind"] = patch["kind"]
        result = self._reread_run(merged, op, what)
        return run if result is None else result

    def _apply_shortcuts(self, run: Any, op: m.PolyaxonfileSpec, shortcuts: list[str], strategy: str) -> Any:
        if run is None:
            # §1.4: `ports` makes a service, every other shortcut a job
            body: dict[str, Any] = {"kind": "service" if "ports" in shortcuts else "job"}
        else:
            body = msgspec.to_builtins(run)
        if body.get("kind") == "dag" and any(s in shortcuts for s in ("container", "cmd", "env", "resources", "init",
                                                                      "sidecars", "ports")):
            bad = next(s for s in shortcuts if s in ("container", "cmd", "env", "resources", "init", "sidecars", "ports"))
            self.emit("error", self.at(op, bad), f"`{bad}` cannot be used on a DAG component (it has no container)")
            return run
        raw = msgspec.to_builtins(op)
        container = dict(body.get("container") or {})
        touched = False
        if "container" in shortcuts:
            container = _merge(container, raw["container"], strategy)
            touched = True
        if "cmd" in shortcuts:
            lines = op.cmd if isinstance(op.cmd, list) else [op.cmd]
            container["command"] = ["/bin/sh", "-c"]
            container["args"] = ["\n".join(["set -e", *[str(x) for x in lines]])]
            touched = True
        if "env" in shortcuts:
            container["env"] = list(container.get("env") or []) + [{"name": k, "value": v} for k, v in (op.env or {}).items()]
            touched = True
        if "resources" in shortcuts:
            container["resources"] = _merge(container.get("resources") or {}, lower_resources(op.resources or {}), strategy)
            touched = True
        if touched:
            body["container"] = container
        for key in ("environment", "init", "connections", "sidecars", "volumes", "ports"):
            if key in shortcuts:
                body[key] = _merge(body.get(key), raw[key], strategy)
        result = self._reread_run(body, op, "run")
        return run if result is None else result

    # -- IO (§2.1, §2.3) ---------------------------------------------------------------------------

    def io_specs(self, ios: list[m.IO] | None, *, is_output: bool) -> list[IOSpec]:
        if not ios:
            return []
        cached = self._io.get(id(ios))
        if cached is not None:
            return cached
        out: list[IOSpec] = []
        seen: set[str] = set()
        for io in ios:
            spec = self._io_spec(io, is_output=is_output, seen=seen)
            if spec is not None:
                out.append(spec)
        self._io[id(ios)] = out
        return out

    def _io_spec(self, io: m.IO, *, is_output: bool, seen: set[str]) -> IOSpec | None:
        where = self.at(io)
        what = "output" if is_output else "input"
        if io.name in _RESERVED_IO:
            self.emit("error", (where[0], (*where[1], "name")),
                      f"{what} name `{io.name}` is reserved: choose a name not already taken by the context "
                      "(`globals`, `params`, `connections`)")
            return None
        if io.name in seen:
            self.emit("error", (where[0], (*where[1], "name")), f"duplicate {what} name `{io.name}`")  # §1.7 [FLOWD]
            return None
        seen.add(io.name)
        if "." in io.name:
            self.emit("warning", (where[0], (*where[1], "name")),
                      f"{what} name `{io.name}` contains a dot: templates cannot address it as `{{{{ {io.name} }}}}`")
        has_value = io.value is not msgspec.UNSET
        value = None if not has_value else io.value
        if has_value and io.is_optional is False:
            self.emit("error", (where[0], (*where[1], "value")),
                      f"{what} `{io.name}` is not optional and has default value (remove `value` or `isOptional: false`)")
            return None
        if io.is_flag and io.type != "bool":
            self.emit("error", (where[0], (*where[1], "isFlag")), f"{what} `{io.name}` of type `{io.type}` cannot be a flag "
                                                                  "(`isFlag` needs `type: bool`)")
            return None
        if io.type is not None and not known_type(io.type):
            hint = did_you_mean(io.type, type_names())
            self.emit("warning", (where[0], (*where[1], "type")),
                      f"unknown type `{io.type}` for {what} `{io.name}`: no value can validate against it{hint}")
        validation = msgspec.to_builtins(io.validation) if io.validation is not None else None
        delay = io.delay_validation
        if delay is None and io.validation is not None and io.validation.delay is not None:
            delay = io.validation.delay  # [FLOWD] honour `validation.delay` (POLYFLOW §2.5)
        binding = is_output and isinstance(value, str) and binds_inner_output(value)
        spec = IOSpec(
            name=io.name, type=io.type,
            is_optional=bool(io.is_optional) or (has_value and io.is_optional is None and not binding),
            is_list=bool(io.is_list), value=value, is_flag=bool(io.is_flag), arg_format=io.arg_format,
            to_env=io.to_env, connection=io.connection, delay_validation=delay, validation=validation,
            to_init=io.to_init, description=io.description,
        )
        # §2.3 rule 3: a default is validated at declaration, templates included (as in the reference)
        # [FLOWD] an output of a DAG component bound to an inner op's output (`value: "{{ ops.X.outputs.Y }}"`)
        # is not a default: it is checked by the DAG (flowd.spec.dag) and rendered when the DAG succeeds
        if io.type and value is not None and not binding:  # an empty type skips this check (but no param value validates)
            try:
                coerce(spec, value, reference_compat=self.compat)
            except CoercionError as exc:
                self.emit("error", (where[0], (*where[1], "value")), f"invalid default value for {what} {exc}")
        return spec

    # -- runtime warnings ------------------------------------------------------------------------

    def check_runtime(self, run: Any) -> None:
        """Warn about containers that cannot run on Kubernetes (once per runtime)."""
        if run is None or id(run) in self._checked_runtimes or isinstance(run, m.DagRuntime):
            return
        self._checked_runtimes.add(id(run))
        if self.at(run) in self.error_prefixes():
            return  # something in it was already reported (and dropped)
        for path, container in _containers(run):
            where = self.at(run, *path)
            if container is None:
                self.emit("warning", self.at(run), "the runtime has no `container`: there is nothing to run")
                continue
            image = container.get("image")
            if not image:
                hint = ""
                name = container.get("name")
                if (isinstance(name, str) and any(ch in name for ch in ":/")) or (isinstance(name, str) and "image" in name):
                    hint = f" (`name: {name}` looks like an image: did you mean `image: {name}`?)"
                self.emit("warning", where, "the container has no `image`: it can run locally but not on Kubernetes" + hint)


def _containers(run: Any) -> list[tuple[tuple[Any, ...], dict[str, Any] | None]]:
    if isinstance(run, m.JobRuntime):
        return [(("container",), run.container)]
    out: list[tuple[tuple[Any, ...], dict[str, Any] | None]] = []
    for f in msgspec.structs.fields(run):
        value = getattr(run, f.name)
        if isinstance(value, m.Replica) and value.container is not None:
            out.append(((f.encode_name, "container"), value.container))
        elif isinstance(value, dict) and f.name == "workers":
            for k, rep in value.items():
                if isinstance(rep, m.Replica) and rep.container is not None:
                    out.append(((f.encode_name, k, "container"), rep.container))
    return out


def text_bytes(text: str, limit: int) -> int:
    """UTF-8 size of ``text``, encoding it only when the character count cannot decide."""
    if len(text) * 4 <= limit:
        return len(text)  # certainly under it
    return len(text.encode("utf-8", "surrogatepass"))


def default_hub() -> str | None:
    return os.environ.get("FLOWD_HUB") or None


def default_presets() -> str | None:
    return os.environ.get("FLOWD_PRESETS") or None
