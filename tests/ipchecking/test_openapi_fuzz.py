"""schemathesis against the service's own OpenAPI schema: no server errors, answers as documented.

The app (fast path in front of FastAPI) is built at import, which opens
nothing: its lifespan never runs here, so no sync starts and the state
directory is never touched. It serves a small version set directly.
"""

from __future__ import annotations

from pathlib import Path

import schemathesis

from blocklist.settings import Settings
from ipchecking.app import create_app
from tests.versions import make_version

app = create_app(Settings(bootstrap=False, state_dir=Path("/nonexistent/never-used")))
app.holder.swap(make_version(1, "1.2.3.4", "10.0.0.0/8", "2001:db8::/32"))
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.parametrize()
def test_every_documented_operation_answers_as_documented(case: schemathesis.Case) -> None:
    case.call_and_validate()
