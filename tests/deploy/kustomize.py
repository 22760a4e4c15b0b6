"""A small kustomize renderer: just the features ``k8s/`` uses, so tests can
render the manifests without ``kubectl`` or ``kustomize`` installed.

Supported in a ``kustomization.yaml``, applied in this order:

- ``resources``: YAML files (several documents each) and directories with
  their own kustomization, rendered first;
- ``patches``: strategic-merge patches, from a file (``path``) or inline
  (``patch``), without ``target``, one YAML document each: kustomize before
  v5.1 (the one kubectl 1.30 and older bundle) refuses several documents in
  one patch, so this renderer raises :class:`MultiDocumentPatch` for them.
  A patch names its object by ``kind`` and ``metadata.name`` (and
  ``apiVersion`` group). Merging: dicts recursively; a ``null`` deletes the
  key; lists whose items are all dicts with a ``name`` key are merged item
  by item on ``name``; other lists and scalars are replaced. (Real
  strategic merge picks the merge key per field, e.g. ``containerPort`` for
  ports and ``mountPath`` for volume mounts: keep ``name`` in such patched
  items, or replace the list whole.)
- ``namespace``: set on every namespaced object;
- ``labels``: ``pairs`` added to every object's labels and, with
  ``includeTemplates``, to pod templates and StatefulSet volume claim
  templates (``includeSelectors: true`` is not supported);
- ``images``: ``name`` with ``newName``, ``newTag`` and/or ``digest``, in
  every ``containers`` and ``initContainers`` list.

Anything else (generators, ``commonLabels``, ``target``, ...) raises
:class:`Unsupported` instead of being silently ignored.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]

KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
#: Kinds without a namespace, among those a kustomization here may hold.
CLUSTER_SCOPED = frozenset(
    {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PersistentVolume"}
)
SUPPORTED_FIELDS = frozenset({"apiVersion", "kind", "resources", "patches", "namespace", "labels", "images"})
WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"})


class Unsupported(ValueError):
    """The kustomization uses a feature this renderer does not implement."""


class MultiDocumentPatch(ValueError):
    """A ``patches`` entry holds more than one YAML document."""


def render(directory: Path) -> list[Obj]:
    """Objects of the kustomization in ``directory``, transformed."""
    directory = Path(directory)
    kustomization = _load_kustomization(directory)
    unknown = set(kustomization) - SUPPORTED_FIELDS
    if unknown:
        raise Unsupported(f"{directory}: unsupported kustomization fields {sorted(unknown)}")
    objects: list[Obj] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        objects.extend(render(path) if path.is_dir() else _load_documents(path))
    for patch_entry in kustomization.get("patches", []):
        for patch in _patch_documents(directory, patch_entry):
            _apply_patch(objects, patch)
    if "namespace" in kustomization:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = kustomization["namespace"]
    for label_entry in kustomization.get("labels", []):
        _add_labels(objects, label_entry)
    for image in kustomization.get("images", []):
        for obj in objects:
            _set_images(obj, image)
    return objects


def strategic_merge(base: Any, patch: Any) -> Any:
    """``patch`` merged into a copy of ``base`` (see the module docstring)."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            elif key in merged:
                merged[key] = strategic_merge(merged[key], value)
            else:
                merged[key] = copy.deepcopy(value)
        return merged
    if isinstance(base, list) and isinstance(patch, list) and _named_items(base) and _named_items(patch):
        merged_list = list(base)
        for item in patch:
            index = next((i for i, old in enumerate(merged_list) if old["name"] == item["name"]), None)
            if index is None:
                merged_list.append(copy.deepcopy(item))
            else:
                merged_list[index] = strategic_merge(merged_list[index], item)
        return merged_list
    return copy.deepcopy(patch)


def _named_items(items: list[Any]) -> bool:
    return bool(items) and all(isinstance(item, dict) and "name" in item for item in items)


def _load_kustomization(directory: Path) -> Obj:
    for name in KUSTOMIZATION_NAMES:
        path = directory / name
        if path.is_file():
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError(f"{path}: not a mapping")
            return data
    raise FileNotFoundError(f"no kustomization in {directory}")


def _load_documents(path: Path) -> list[Obj]:
    docs = [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]
    for doc in docs:
        if not isinstance(doc, dict) or "kind" not in doc or "name" not in doc.get("metadata", {}):
            raise ValueError(f"{path}: every document needs kind and metadata.name")
    return docs


def _patch_documents(directory: Path, entry: Obj) -> list[Obj]:
    extra = set(entry) - {"path", "patch"}
    if extra or len(entry) != 1:
        raise Unsupported(f"{directory}: patches entries take exactly one of path or patch, got {entry}")
    if "path" in entry:
        where = str(directory / entry["path"])
        docs = _load_documents(directory / entry["path"])
    else:
        where = f"{directory}: inline patch"
        docs = [doc for doc in yaml.safe_load_all(entry["patch"]) if doc is not None]
    if len(docs) > 1:
        raise MultiDocumentPatch(
            f"{where}: {len(docs)} YAML documents in one patch; kustomize before v5.1 "
            "(kubectl <= 1.30) accepts one per patch: split it into one file per object"
        )
    return docs


def _group(api_version: str) -> str:
    return api_version.rpartition("/")[0] if "/" in api_version else ""


def _apply_patch(objects: list[Obj], patch: Obj) -> None:
    meta = patch["metadata"]
    matches = [
        i
        for i, obj in enumerate(objects)
        if obj["kind"] == patch["kind"]
        and obj["metadata"]["name"] == meta["name"]
        and _group(obj["apiVersion"]) == _group(patch["apiVersion"])
        and meta.get("namespace", obj["metadata"].get("namespace")) == obj["metadata"].get("namespace")
    ]
    if len(matches) != 1:
        raise ValueError(f"patch {patch['kind']}/{meta['name']} matches {len(matches)} objects, not 1")
    objects[matches[0]] = strategic_merge(objects[matches[0]], patch)


def _add_labels(objects: list[Obj], entry: Obj) -> None:
    if entry.get("includeSelectors"):
        raise Unsupported("labels with includeSelectors: true")
    pairs = entry["pairs"]
    for obj in objects:
        obj["metadata"].setdefault("labels", {}).update(pairs)
        if not entry.get("includeTemplates") or obj["kind"] not in WORKLOAD_KINDS:
            continue
        template_meta = obj["spec"]["template"].setdefault("metadata", {})
        template_meta.setdefault("labels", {}).update(pairs)
        for claim in obj["spec"].get("volumeClaimTemplates", []):
            claim["metadata"].setdefault("labels", {}).update(pairs)


def _image_name(image: str) -> str:
    """``registry:5000/app:1.0@sha256:...`` -> ``registry:5000/app``."""
    name = image.split("@", 1)[0]
    head, sep, tail = name.rpartition(":")
    return head if sep and "/" not in tail else name


def _set_images(node: Any, image: Obj) -> None:
    if isinstance(node, list):
        for item in node:
            _set_images(item, image)
        return
    if not isinstance(node, dict):
        return
    for key in ("containers", "initContainers"):
        for container in node.get(key, []):
            if isinstance(container, dict) and _image_name(container.get("image", "")) == image["name"]:
                container["image"] = _new_image(container["image"], image)
    for value in node.values():
        _set_images(value, image)


def _new_image(current: str, image: Obj) -> str:
    name = image.get("newName", image["name"])
    if "digest" in image:
        return f"{name}@{image['digest']}"
    if "newTag" in image:
        return f"{name}:{image['newTag']}"
    return name + current[len(_image_name(current)) :]
