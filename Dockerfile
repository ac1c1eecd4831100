# syntax=docker/dockerfile:1
# Crieur in a container. The configuration is mounted at /config/config.yaml (read-only is
# fine); the database and the Matrix device and keys live in /data, which must persist: a new
# device on every start would break encryption and the homeserver's deduplication of retries.
#
#   docker build -t crieur .
#   docker run -d --name crieur -v "$PWD/config.yaml:/config/config.yaml:ro" \
#       -v crieur-data:/data -e CRIEUR_MATRIX_PASSWORD crieur
#
# In the mounted config, set `database: /data/crieur.sqlite3` (a relative path would point into
# /config) and, for the health check below, `http: {listen: 0.0.0.0:9100}`.
#
# The install is the project's tested one: `pip install '.[e2e]'` into a virtualenv, as the
# Makefile does. Every dependency ships wheels for linux/amd64 and linux/arm64 (matrix-nio 0.26
# encrypts with vodozemac, not libolm), so the builder needs no compiler; on a platform without
# wheels, add `apt-get install -y build-essential` to the builder stage. The builder only keeps
# pip's work out of the runtime image, which gets the finished virtualenv.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/crieur \
    && /opt/crieur/bin/python -m pip install --upgrade pip
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
RUN /opt/crieur/bin/python -m pip install '.[e2e]'

# Same base image: the virtualenv's python links to /usr/local/bin/python3.11 of this image.
FROM ${PYTHON_IMAGE}
ENV PATH=/opt/crieur/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN useradd --system --uid 10001 --user-group --home-dir /data --no-create-home crieur \
    && mkdir -p /config /data \
    && chown crieur:crieur /data
COPY --from=builder /opt/crieur /opt/crieur
USER crieur
WORKDIR /data
VOLUME ["/data"]
EXPOSE 9100

# Asks the bot's own /health (200 when the Matrix sync, the scheduler and the homeserver are
# alive; 503 otherwise). It needs `http.listen: 0.0.0.0:9100` (or 127.0.0.1:9100) in the
# config. Without a listener the check fails on purpose and the container shows "unhealthy":
# a check that passes when it cannot look would hide a stuck bot. If you keep http.listen off,
# run with --no-healthcheck (compose: `healthcheck: {disable: true}`).
# The start period covers the first sync with full state, which can take minutes.
HEALTHCHECK --interval=30s --timeout=10s --start-period=5m --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9100/health', timeout=5)"]

# Exec form: crieur is PID 1 and receives SIGTERM itself, so `docker stop` shuts it down cleanly.
ENTRYPOINT ["crieur", "run", "-c", "/config/config.yaml"]
