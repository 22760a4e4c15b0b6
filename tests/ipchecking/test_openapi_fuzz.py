"""schemathesis against the service's own OpenAPI schema: no server errors, answers as documented.

The app (fast path in front of FastAPI) is built at import, which opens
nothing. It serves a small version set directly. Should the test client
run its lifespan, the feed is a local path that does not exist (a failed
sync, never a network call and no retry waits) and the state directory
is a fresh temp directory (control data in SQLite there; the second test
presents an admin key so that bodies get past authentication).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from schemathesis.checks import not_a_server_error

from blocklist.settings import Settings
from ipchecking.app import create_app
from ipchecking.auth import key_digest
from tests.versions import make_version

ADMIN_KEY = "admin-key-of-the-fuzz-test"
app = create_app(
    Settings(
        bootstrap=False,
        state_dir=Path(tempfile.mkdtemp(prefix="blocklist-fuzz-")),
        feeds="local=plain:/nonexistent/feed.txt",
        retry_attempts=1,
        api_keys=key_digest(ADMIN_KEY),
    )
)
app.holder.swap(make_version(1, "1.2.3.4", "10.0.0.0/8", "2001:db8::/32"))
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.parametrize()
def test_every_documented_operation_answers_as_documented(case: schemathesis.Case) -> None:
    case.call_and_validate()


@schema.include(path_regex="^/(v1/(overrides|reports|audit)|iprepd/)").parametrize()
def test_operator_routes_with_an_admin_key_answer_as_documented(case: schemathesis.Case) -> None:
    """With a key the bodies reach the store (SQLite in a temp dir): never a server error.

    Only that is checked here: these routes refuse, by design, much that the
    schema allows (an address is a string), which the conformance checks of
    the test above, without a key, do not reach.
    """
    case.call_and_validate(headers={"Authorization": f"Bearer {ADMIN_KEY}"}, checks=[not_a_server_error])
