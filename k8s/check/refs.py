#!/usr/bin/env python3
"""Checks the meaning of a rendered kustomize tree, beyond each object's schema:
- it renders objects at all;
- each workload's selector matches its own pod template's labels;
- each Service selects the pods of some workload, and each of its target ports is a port a
  container of those pods exposes (by number or name);
- each Secret and ConfigMap a pod names (env, envFrom, volumes) is defined in the tree, unless
  it is listed as provided from outside (`--external Secret/name`, as the prod overlay's
  comment tells the operator to create it);
- each ServiceMonitor selects some Service, and each of its endpoints names a port that
  Service has.
Usage: refs.py [--external Kind/name]... <rendered.yaml>"""
import sys

import yaml

WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}


def pods(obj):
    spec = obj.get("spec", {})
    if obj["kind"] == "CronJob":
        spec = spec.get("jobTemplate", {}).get("spec", {})
    return spec.get("template", {})


def named_refs(template):
    spec = template.get("spec", {})
    refs = []
    for c in spec.get("containers", []) + spec.get("initContainers", []):
        for env in c.get("env", []):
            source = env.get("valueFrom", {})
            if "secretKeyRef" in source and not source["secretKeyRef"].get("optional"):
                refs.append(("Secret", source["secretKeyRef"]["name"]))
            if "configMapKeyRef" in source and not source["configMapKeyRef"].get("optional"):
                refs.append(("ConfigMap", source["configMapKeyRef"]["name"]))
        for env in c.get("envFrom", []):
            if "secretRef" in env and not env["secretRef"].get("optional"):
                refs.append(("Secret", env["secretRef"]["name"]))
            if "configMapRef" in env and not env["configMapRef"].get("optional"):
                refs.append(("ConfigMap", env["configMapRef"]["name"]))
    for v in spec.get("volumes", []):
        if "secret" in v and not v["secret"].get("optional"):
            refs.append(("Secret", v["secret"]["secretName"]))
        if "configMap" in v and not v["configMap"].get("optional"):
            refs.append(("ConfigMap", v["configMap"]["name"]))
        for source in v.get("projected", {}).get("sources", []):
            if "secret" in source:
                refs.append(("Secret", source["secret"]["name"]))
            if "configMap" in source:
                refs.append(("ConfigMap", source["configMap"]["name"]))
    return refs


def check(path, external):
    objects = [o for o in yaml.safe_load_all(open(path)) if o]
    errors = []
    if not objects:
        return [f"{path}: renders no objects"]
    defined = {(o["kind"], o["metadata"]["name"]) for o in objects}
    workloads = [o for o in objects if o["kind"] in WORKLOADS | {"CronJob"}]
    for w in workloads:
        name = f'{w["kind"]}/{w["metadata"]["name"]}'
        template = pods(w)
        labels = template.get("metadata", {}).get("labels", {})
        selector = w.get("spec", {}).get("selector", {}).get("matchLabels", {})
        if w["kind"] in {"Deployment", "StatefulSet", "DaemonSet"} and not selector:
            errors.append(f"{name}: no selector")
        for key, value in selector.items():
            if labels.get(key) != value:
                errors.append(f"{name}: selector {key}={value} does not match its pods' labels {labels}")
        for kind, ref in named_refs(template):
            if (kind, ref) not in defined and f"{kind}/{ref}" not in external:
                errors.append(f"{name}: {kind} {ref} is defined nowhere in the tree")
    for svc in (o for o in objects if o["kind"] == "Service"):
        name = f'Service/{svc["metadata"]["name"]}'
        selector = svc.get("spec", {}).get("selector", {})
        if not selector:
            continue
        selected = [w for w in workloads if all(pods(w).get("metadata", {}).get("labels", {}).get(k) == v for k, v in selector.items())]
        if not selected:
            errors.append(f"{name}: selector {selector} matches no workload's pods")
            continue
        exposed = set()
        for w in selected:
            for c in pods(w).get("spec", {}).get("containers", []):
                for port in c.get("ports", []):
                    exposed.add(port["containerPort"])
                    if "name" in port:
                        exposed.add(port["name"])
        for port in svc.get("spec", {}).get("ports", []):
            target = port.get("targetPort", port["port"])
            if target not in exposed:
                errors.append(f"{name}: port {port.get('name', port['port'])} targets {target}, which no selected container exposes")
    services = [o for o in objects if o["kind"] == "Service"]
    for monitor in (o for o in objects if o["kind"] == "ServiceMonitor"):
        name = f'ServiceMonitor/{monitor["metadata"]["name"]}'
        wanted = monitor.get("spec", {}).get("selector", {}).get("matchLabels", {})
        selected = [s for s in services if all(s["metadata"].get("labels", {}).get(k) == v for k, v in wanted.items())]
        if not wanted or not selected:
            errors.append(f"{name}: selector {wanted} matches no Service")
            continue
        for endpoint in monitor["spec"].get("endpoints", []):
            for svc in selected:
                ports = {p.get("name") for p in svc["spec"].get("ports", [])}
                if endpoint.get("port") not in ports:
                    errors.append(f'{name}: Service/{svc["metadata"]["name"]} has no port {endpoint.get("port")!r}')
    return errors


args = sys.argv[1:]
external = {args[i + 1] for i, a in enumerate(args) if a == "--external"}
paths = [a for i, a in enumerate(args) if a != "--external" and (i == 0 or args[i - 1] != "--external")]
failed = not paths
for path in paths:
    errors = check(path, external)
    for e in errors:
        print(f"k8s check: {e}", file=sys.stderr)
    failed |= bool(errors)
    if not errors:
        print(f"{path}: selectors, Service ports, Secret and ConfigMap references resolve")
sys.exit(1 if failed else 0)
