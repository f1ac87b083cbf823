# syntax=docker/dockerfile:1
# nbembed's services (gateway, provisioner, sync) and its JupyterHub image.
#
#   docker build -f deploy/docker/services.Dockerfile -t nbembed/services:0.1.0 .
#   docker build -f deploy/docker/services.Dockerfile --target hub -t nbembed/hub:0.1.0 .
#
# One image for the three services: the command picks the service
# (`python -m services.gateway`, `services.provisioner`, `services.sync`), as the
# Helm chart and deploy/compose.yaml do. Multi-stage: the build stage has pip and
# the build backend; the runtime stage has only the virtualenv and runs as an
# unprivileged user with no writable path it needs (read-only root fs in the chart).
# Secrets are never baked in: they arrive as files mounted at run time.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/nbembed
WORKDIR /src
# Dependencies first (pinned in pyproject.toml), so code changes reuse this layer.
COPY pyproject.toml README.md ./
COPY schemas/ schemas/
COPY services/ services/
COPY infra/ infra/
COPY demo/ demo/
RUN /opt/nbembed/bin/pip install --no-compile . \
 && /opt/nbembed/bin/python -c "import services.gateway.app, services.provisioner.app, services.sync.app"

FROM ${PYTHON_IMAGE} AS services
# A fixed uid/gid so the chart's securityContext (runAsUser 10001) matches.
RUN groupadd --system --gid 10001 nbembed \
 && useradd --system --uid 10001 --gid nbembed --no-create-home --shell /usr/sbin/nologin nbembed
COPY --from=build /opt/nbembed /opt/nbembed
# HOME on the writable /tmp (an emptyDir in the chart): the root fs is read-only.
ENV PATH=/opt/nbembed/bin:$PATH \
    HOME=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    NBEMBED_GATEWAY_HTTP_HOST=0.0.0.0 \
    NBEMBED_PROVISIONER_HTTP_HOST=0.0.0.0 \
    NBEMBED_SYNC_HTTP_HOST=0.0.0.0
WORKDIR /tmp
USER 10001:10001
# gateway 8080, provisioner 8091, sync 8092 (their settings' defaults)
EXPOSE 8080 8091 8092
ENTRYPOINT ["python", "-m"]
CMD ["services.gateway"]

# JupyterHub for Zero to JupyterHub: the z2jh hub image plus nbembed's ticket login
# (infra/hub/ticket_login.py, hub_frames.py and the schemas they read). Installed without
# dependencies so the hub's own JupyterHub and KubeSpawner stay as z2jh ships them;
# the ticket login needs only httpx and pydantic besides JupyterHub. The z2jh image's
# Python may be newer than pyproject.toml's 3.11 pin; the ticket login and the
# schemas it reads run on 3.11 and later, hence --ignore-requires-python.
FROM quay.io/jupyterhub/k8s-hub:4.3.3 AS hub
USER root
COPY --from=build /src /tmp/nbembed-src
RUN python3 -m pip install --no-cache-dir --no-compile httpx==0.28.1 pydantic==2.14.3 \
 && python3 -m pip install --no-cache-dir --no-compile --no-deps --ignore-requires-python /tmp/nbembed-src \
 && rm -rf /tmp/nbembed-src \
 && python3 -c "import infra.hub.ticket_login, infra.hub.server_stops, infra.hub.hub_frames"
USER 1000:1000
