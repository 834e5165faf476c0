#!/usr/bin/env python3
"""Teach kubernetes-validate the custom resources the manifests use (NACK, KEDA).

kubernetes-validate has no option for extra schemas: it reads
  <package>/kubernetes-json-schema/v<K8S>-local[-strict]/<kind>-<group's first label>-<version>.json
This writes each CRD version's openAPIV3Schema there (draft 2020-12, with an $id), and a strict
variant that refuses unknown fields, so `--strict` checks custom resources as it checks Deployments.

usage: crd_schemas.py <kubernetes version, e.g. 1.32.0> <crd.yml>...
"""
import copy
import json
import os
import sys

import kubernetes_validate
import yaml


def strict(node):
    """Refuse unknown properties wherever an object lists its properties."""
    if isinstance(node, dict):
        if (
            node.get("type") == "object"
            and "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        for value in node.values():
            strict(value)
    elif isinstance(node, list):
        for value in node:
            strict(value)
    return node


def main():
    version, files = sys.argv[1], sys.argv[2:]
    root = os.path.join(os.path.dirname(kubernetes_validate.__file__), "kubernetes-json-schema")
    for path in files:
        with open(path) as f:
            documents = list(yaml.safe_load_all(f))
        for crd in documents:
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group = crd["spec"]["group"].split(".")[0]
            kind = crd["spec"]["names"]["kind"].lower()
            for served in crd["spec"]["versions"]:
                schema = copy.deepcopy(served["schema"]["openAPIV3Schema"])
                properties = schema.setdefault("properties", {})
                properties.setdefault("apiVersion", {"type": "string"})
                properties.setdefault("kind", {"type": "string"})
                properties.setdefault("metadata", {"type": "object"})
                name = f"{kind}-{group}-{served['name']}"
                schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
                schema["$id"] = f"https://jetsource.local/crd/{name}"
                for suffix, variant in (("", schema), ("-strict", strict(copy.deepcopy(schema)))):
                    directory = os.path.join(root, f"v{version}-local{suffix}")
                    with open(os.path.join(directory, name + ".json"), "w") as out:
                        json.dump(variant, out)


if __name__ == "__main__":
    main()
