"""What deployment files must agree with: the settings the code reads, the
routes the app serves, the port it listens on."""

from __future__ import annotations

from pathlib import Path

from blocklist.settings import Settings
from ipchecking.app import create_app

ROOT = Path(__file__).resolve().parents[2]
#: Port the API listens on inside containers and pods.
API_PORT = 8000


def known_env_names() -> set[str]:
    """Every environment variable :class:`Settings` reads."""
    names = {"REDIS_URL"}
    for name, field in Settings.model_fields.items():
        names.add(f"BLOCKLIST_{name.upper()}")
        alias = field.validation_alias
        choices = getattr(alias, "choices", None)
        names.update(str(c) for c in choices or ())
    return names


def app_paths() -> set[str]:
    """Paths the API documents in its OpenAPI schema (``/check_ip/{ip}`` as ``/check_ip/``)."""
    schema = create_app(Settings(redis_url=None)).app.openapi()
    return {path.split("{")[0] for path in schema["paths"]}
