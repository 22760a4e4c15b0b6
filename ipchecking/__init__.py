"""The blocklist API: FastAPI app, its lean ``/check_ip`` fast path, and the
runtimes that keep a served version loaded (embedded mode)."""
