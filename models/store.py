"""The BentoML model store: save an artifact under name:version, find it, verify it.

Loading verifies the sha256 of every file the manifest lists and refuses an artifact whose
files were changed, truncated or are missing, so the service never serves a half-copied model.
bentoml is imported lazily: reading a manifest needs nothing more than pydantic.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.artifact import INT8, MANIFEST_FILE
from models.manifest import Manifest, sha256_file

MODULE = "alignserve"


class ArtifactError(RuntimeError):
    """An artifact that must not be served, with what is wrong with it."""


class InvalidTag(ArtifactError):
    """A string that cannot name a stored model (BentoML's rules: name[:version], each at most
    63 characters of letters, digits, '_', '-' and '.')."""


def use_default_home(environ: MutableMapping[str, str] = os.environ) -> Path:
    """One model store for every entry point (`make`, `alignserve`, `python -m service`):
    $BENTOML_HOME when set; else, in a source checkout (this package beside pyproject.toml),
    its .bentoml/, where `make serve` builds the default models; else BentoML's ~/bentoml.
    Called before bentoml is first imported, which reads it. Telemetry is off unless asked."""
    checkout = Path(__file__).resolve().parents[1]
    if not environ.get("BENTOML_HOME") and (checkout / "pyproject.toml").exists():
        environ["BENTOML_HOME"] = str(checkout / ".bentoml")
    environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    return Path(environ.get("BENTOML_HOME") or Path.home() / "bentoml")


def _bentoml() -> Any:
    use_default_home()
    try:
        import bentoml
    except ImportError as exc:
        raise ImportError("bentoml is missing: install alignserve[serve] or [train]") from exc
    return bentoml


def verify(directory: Path) -> Manifest:
    """The manifest, once every file it lists exists with its recorded sha256."""
    if not (directory / MANIFEST_FILE).exists():
        raise ArtifactError(f"{directory}: no {MANIFEST_FILE}; not an alignserve artifact")
    manifest = Manifest.load(directory)
    if not manifest.files:
        raise ArtifactError(f"{directory}: the manifest lists no files")
    problems = []
    for name, expected in manifest.files.items():
        path = directory / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif (actual := sha256_file(path)) != expected:
            problems.append(f"{name} was changed or truncated (sha256 {actual[:12]}…, "
                            f"the manifest says {expected[:12]}…)")
    if problems:
        raise ArtifactError(f"refusing {manifest.name}:{manifest.version} at {directory}: "
                            + "; ".join(problems))
    return manifest


def save(directory: Path) -> str:
    """Copy a verified artifact into the store; returns its tag name:version."""
    manifest = verify(directory)
    bentoml = _bentoml()
    labels = {"task": manifest.task.value, "backbone": manifest.backbone.replace("/", "_")[:63]}
    metadata = {"labels": manifest.labels, "max_length": manifest.input.max_length,
                "opset": manifest.opset, "int8": (directory / INT8).exists(),
                "metrics": {k: v.get("accuracy") for k, v in manifest.metrics.items()
                            if "accuracy" in v}}
    tag = f"{manifest.name}:{manifest.version}"
    try:
        bentoml.models.get(tag)
    except bentoml.exceptions.NotFound:
        pass
    else:
        raise ArtifactError(f"{tag} is already in the store at {store_location()}: a version "
                            "is never overwritten (train again for a new version, or "
                            f"`bentoml models delete {tag}` first)")
    with bentoml.models.create(tag, labels=labels, metadata=metadata, module=MODULE) as model:
        for name in [*manifest.files, MANIFEST_FILE]:
            target = Path(model.path) / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(directory / name, target)
    return tag


@dataclass(frozen=True)
class Stored:
    tag: str
    path: Path
    manifest: Manifest


def _find(tag: str) -> Any:
    bentoml = _bentoml()
    try:
        return bentoml.models.get(tag)
    except bentoml.exceptions.NotFound:
        raise ArtifactError(f"no model {tag!r} in the store at {store_location()}") from None
    except (ValueError, bentoml.exceptions.BentoMLException) as exc:  # a malformed tag
        raise InvalidTag(f"not a model tag: {str(exc)[:240]}") from None


def resolve(tag: str) -> str:
    """name or name:version -> the exact name:version in the local store (never remote)."""
    return str(_find(tag).tag)


def get(tag: str) -> Stored:
    """A stored artifact by name (latest version) or name:version, verified."""
    model = _find(tag)
    path = Path(model.path)
    return Stored(str(model.tag), path, verify(path))


def list_stored() -> list[tuple[str, Path]]:
    bentoml = _bentoml()
    return [(str(m.tag), Path(m.path)) for m in bentoml.models.list()
            if m.info.module == MODULE]


def store_location() -> str:
    _bentoml()  # the one default home first, as for every other entry to the store
    from bentoml._internal.configuration.containers import BentoMLContainer

    return str(BentoMLContainer.model_store_dir.get())
