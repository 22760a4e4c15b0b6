# One image, two entry points. The API replicas and the updater worker share
# all of their code (blocklist/ core) and every dependency, so a second image
# would only duplicate ~55 MB and give two things to build, scan and keep in
# step:
#   API (default):  python -m ipchecking --host 0.0.0.0 --port 8000
#   updater:        command: ["python", "-m", "blocklistupdater"]
#
# Expected size: about 180 MB uncompressed (about 60 MB compressed): the
# python slim base (~125 MB) plus /opt/venv (~55 MB: measured with `du -sh` on
# a venv holding exactly requirements.lock and the project, bytecode included,
# without pip and setuptools). No compiler, no build tools, no pip in the venv.
#
# Dependencies come only from requirements.lock (regenerate with scripts/lock);
# both stages use the same base, so the venv's interpreter link stays valid.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
# A venv without pip: the base image's pip installs into it (--python).
RUN python -m venv --without-pip /opt/venv
WORKDIR /src
# The lock first: this layer is rebuilt only when the dependencies change.
# Wheels only (every pinned package ships manylinux wheels for 3.11), so no
# compiler is needed even here; --no-deps: the lock is the whole closure.
COPY requirements.lock ./
RUN python -m pip --python /opt/venv/bin/python install \
        --no-cache-dir --only-binary=:all: --no-deps --requirement requirements.lock
COPY pyproject.toml README.md ./
COPY blocklist/ ./blocklist/
COPY blocklistupdater/ ./blocklistupdater/
COPY ipchecking/ ./ipchecking/
# The project itself: a regular (non-editable) install, nothing else pulled
# in; pip check fails the build if the lock misses a dependency.
RUN python -m pip --python /opt/venv/bin/python install --no-cache-dir --no-deps . \
    && python -m pip --python /opt/venv/bin/python check

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="blocklist-service" \
      org.opencontainers.image.description="IP blocklist service: API (default) and updater worker (python -m blocklistupdater)"
# Fixed numeric UID/GID, so volumes, Kubernetes securityContext
# (runAsUser: 10001) and file ownership agree everywhere. The state directory
# is the only path the processes write to (the updater's feeds and version).
RUN groupadd --system --gid 10001 blocklist \
    && useradd --system --no-log-init --uid 10001 --gid 10001 \
        --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin blocklist \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/blocklist
COPY --from=builder /opt/venv /opt/venv
# PYTHONSAFEPATH: `python -m` does not put the working directory on sys.path.
ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONSAFEPATH=1 \
    BLOCKLIST_STATE_DIR=/var/lib/blocklist
WORKDIR /var/lib/blocklist
USER 10001:10001
EXPOSE 8000
# Liveness of the API (the updater's compose service and pod define their
# own probe: python -m blocklistupdater --check). urllib: slim has no curl.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=3)"]
# Both processes stop cleanly on SIGTERM (uvicorn drains; the worker
# finishes or abandons its sync within 10 s).
STOPSIGNAL SIGTERM
CMD ["python", "-m", "ipchecking", "--host", "0.0.0.0", "--port", "8000"]
