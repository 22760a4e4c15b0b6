"""schemathesis against the service's own OpenAPI schema: no server errors, answers as documented.

The app (fast path in front of FastAPI) is built at import, which opens
nothing. It serves a small version set directly. Should the test client
run its lifespan, the feed is a local path that does not exist (a failed
sync, never a network call and no retry waits) and the state directory
cannot be created (control-data routes answer 503, as documented).
"""

from __future__ import annotations

from pathlib import Path

import schemathesis

from blocklist.settings import Settings
from ipchecking.app import create_app
from tests.versions import make_version

app = create_app(
    Settings(
        bootstrap=False,
        state_dir=Path("/nonexistent/never-used"),
        feeds="local=plain:/nonexistent/feed.txt",
        retry_attempts=1,
    )
)
app.holder.swap(make_version(1, "1.2.3.4", "10.0.0.0/8", "2001:db8::/32"))
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.parametrize()
def test_every_documented_operation_answers_as_documented(case: schemathesis.Case) -> None:
    case.call_and_validate()
