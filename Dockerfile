# tabletlog node image: one node per container.
#
#   docker build -t tabletlog .                       # online: dependencies from PyPI
#   deploy/wheels.sh && podman build -t tabletlog .   # offline: dependencies from wheels/
#
# The project is always built from the source in the build context. Its dependencies come from the
# wheelhouse in wheels/ when it holds any wheel (`pip install --no-index --find-links`, for machines
# whose builds cannot reach PyPI), else from PyPI. TABLETLOG_INSTALL=wheels|pypi forces one.
# Only `python3` and `python3 -m venv` are used from the base image, so a locally built stand-in
# of python:3.11-slim-bookworm (deploy/base-image.sh) works as well as the real one.
#
# Run:  docker run -e TABLETLOG_SECRET=... -v ./cluster.yaml:/etc/tabletlog/cluster.yaml:ro \
#         tabletlog --config /etc/tabletlog/cluster.yaml --node n1
# (compose.yaml runs three of them.)

FROM python:3.11-slim-bookworm AS build
LABEL org.tabletlog.stage=build
ARG TABLETLOG_INSTALL=auto
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv /opt/tabletlog
# Dependencies first, in a layer of their own, so that editing the source does not reinstall them.
COPY pyproject.toml /src/
COPY wheels/ /src/wheels/
RUN set -eu; \
    cd /src; \
    has_wheels=no; \
    if ls wheels/*.whl >/dev/null 2>&1; then has_wheels=yes; fi; \
    case "$TABLETLOG_INSTALL:$has_wheels" in \
        auto:yes|wheels:yes) \
            echo "installing from the wheelhouse (offline)"; \
            echo "--no-index --find-links /src/wheels" >/tmp/pip-source ;; \
        wheels:no) \
            echo "TABLETLOG_INSTALL=wheels but wheels/ is empty: run deploy/wheels.sh" >&2; \
            exit 1 ;; \
        auto:no|pypi:*) \
            echo "installing from PyPI"; \
            : >/tmp/pip-source ;; \
        *) \
            echo "TABLETLOG_INSTALL must be auto, wheels or pypi" >&2; \
            exit 1 ;; \
    esac; \
    python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
        >/tmp/requirements.txt; \
    /opt/tabletlog/bin/pip install $(cat /tmp/pip-source) -r /tmp/requirements.txt
COPY . /src
RUN set -eu; \
    cd /src; \
    /opt/tabletlog/bin/pip install --no-deps $(cat /tmp/pip-source) .; \
    install -m 0644 deploy/healthcheck.py /opt/tabletlog/healthcheck.py; \
    /opt/tabletlog/bin/python -c "import wire, node, storage, replication, client"

FROM python:3.11-slim-bookworm
ENV PATH=/opt/tabletlog/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN groupadd --gid 10001 tabletlog \
    && useradd --uid 10001 --gid tabletlog --no-create-home \
        --home-dir /var/lib/tabletlog --shell /usr/sbin/nologin tabletlog \
    && mkdir -p /var/lib/tabletlog /etc/tabletlog \
    && chown tabletlog:tabletlog /var/lib/tabletlog
COPY --from=build /opt/tabletlog /opt/tabletlog
USER 10001:10001
WORKDIR /var/lib/tabletlog
VOLUME ["/var/lib/tabletlog"]
# The node's own API address is read from its --config/--node arguments: no port to set here.
HEALTHCHECK --interval=5s --timeout=4s --start-period=30s --retries=3 \
    CMD ["python", "/opt/tabletlog/healthcheck.py"]
ENTRYPOINT ["python", "-m", "node"]
CMD ["--help"]
