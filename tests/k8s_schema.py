"""Validate a PaddleJob the way a cluster would, offline (shared by the unit and integration tests).

- the CRD's openAPIV3Schema (kubeflow/training-operator release-1.9, in ../shared/reference/
  kubeflow-paddlejob) with the `jsonschema` package, made strict the way a server with field
  validation is: an object with `properties` accepts no other key (the API server would prune
  it, or with kubectl's default strict field validation reject it);
- the pod template as a core/v1 PodTemplate with `kubernetes-validate` (Kubernetes' OpenAPI
  schemas shipped inside the PyPI package: offline), strict, for Kubernetes 1.31 (the
  k8s.io/api the operator release builds on) and the newest version the package ships.
"""

from __future__ import annotations

from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "kubeflow-paddlejob"
K8S_VERSIONS = ("1.31", kubernetes_validate.latest_version())


def _strict(schema):
    """A copy where objects with `properties` allow no other key (unless the CRD keeps unknown fields)."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out \
                and not out.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def crd_validator() -> jsonschema.Draft7Validator:
    crd = yaml.safe_load((REFERENCE / "kubeflow.org_paddlejobs.yaml").read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    assert crd["spec"]["names"]["kind"] == "PaddleJob" and crd["spec"]["group"] == "kubeflow.org"
    schema = _strict(version["schema"]["openAPIV3Schema"])
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def validate(job: dict, validator: jsonschema.Draft7Validator | None = None) -> None:
    """AssertionError naming the first fields the CRD refuses; kubernetes_validate.ValidationError for the pod."""
    validator = validator or crd_validator()
    errors = sorted(validator.iter_errors(job), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors[:5])
    assert (job["apiVersion"], job["kind"]) == ("kubeflow.org/v1", "PaddleJob")
    template = job["spec"]["paddleReplicaSpecs"]["Worker"]["template"]
    pod_template = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": job["metadata"]["name"]},
                    "template": template}
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(pod_template, version, strict=True)
