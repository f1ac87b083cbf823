# syntax=docker/dockerfile:1
# The single-user server KubeSpawner starts for each hub user:
#
#   docker build -f deploy/docker/singleuser.Dockerfile -t nbembed/singleuser:0.1.0 .
#
# JupyterHub's singleuser entry point, Jupyter Server, Notebook 7 and JupyterLab 4
# at the versions pyproject.toml pins, nbembed's bridge labextension (built from
# infra/bridge in the first stage), JupyterLab's embedded-mode overrides, and the
# server-side pieces in infra/hub/singleuser_python (the launcher, the save hook,
# the inputs extension, the import-time stand-in) on PYTHONPATH. The hub's spawner
# args turn them on (deploy/helm/values-z2jh.yaml). Runs as jovyan (uid 1000), as z2jh expects.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# The bridge needs Node >= 20.19 and jupyter-builder (Python) to build.
FROM node:20.19.5-bookworm-slim AS bridge
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/builder \
 && /opt/builder/bin/pip install --no-cache-dir jupyter-builder==1.3.0
WORKDIR /src/infra/bridge
COPY infra/bridge/package.json infra/bridge/package-lock.json infra/bridge/tsconfig.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY infra/bridge/src/ src/
RUN npx tsc && /opt/builder/bin/jupyter-builder build .

FROM ${PYTHON_IMAGE} AS singleuser
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/jupyter \
 && /opt/jupyter/bin/pip install --no-compile \
      jupyterhub==6.1.1 \
      jupyter-server==2.21.1 \
      notebook==7.6.5 \
      jupyterlab==4.6.6 \
      ipykernel==7.4.0 \
      httpx==0.28.1
COPY --from=bridge /src/infra/bridge/labextension/ /opt/jupyter/share/jupyter/labextensions/nbembed-bridge/
COPY infra/hub/overrides.json /opt/jupyter/share/jupyter/lab/settings/overrides.json
COPY infra/hub/singleuser_python/ /opt/nbembed/singleuser_python/
RUN groupadd --gid 1000 jovyan \
 && useradd --uid 1000 --gid jovyan --create-home --home-dir /home/jovyan --shell /bin/bash jovyan
ENV PATH=/opt/jupyter/bin:$PATH \
    PYTHONPATH=/opt/nbembed/singleuser_python \
    PYTHONNOUSERSITE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /home/jovyan
USER 1000:1000
EXPOSE 8888
# jupyterhub-singleuser, started and stopped faster (nbembed_singleuser.py).
CMD ["python", "-m", "nbembed_singleuser"]

# JupyterHub for deploy/compose.yaml (one host, no Kubernetes): the local stack's
# hub (infra/hub/jupyterhub_config.py, the ticket login, the local-users spawner)
# with configurable-http-proxy, starting each user's server as its own OS account
# from this image's Jupyter environment. The one image that runs as root: creating
# an account per user and switching to it needs root, as on the local stack. The
# servers and kernels it starts never run as root.
FROM node:20.19.5-bookworm-slim AS proxy
WORKDIR /opt/chp
COPY infra/hub/package.json infra/hub/package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund --loglevel=error

FROM singleuser AS hub-local
USER root
COPY --from=proxy /usr/local/bin/node /usr/local/bin/node
COPY --from=proxy /opt/chp /opt/chp
COPY pyproject.toml README.md /opt/nbembed/src/
COPY schemas/ /opt/nbembed/src/schemas/
COPY services/ /opt/nbembed/src/services/
COPY infra/ /opt/nbembed/src/infra/
COPY demo/ /opt/nbembed/src/demo/
RUN /opt/jupyter/bin/pip install --no-compile pydantic==2.14.3 pydantic-settings==2.16.3 \
      jupyterhub-idle-culler==2.0.0 \
 && /opt/jupyter/bin/pip install --no-compile --no-deps /opt/nbembed/src \
 && /opt/jupyter/bin/python -c "import infra.hub.ticket_login, infra.hub.local_users, jupyterhub_idle_culler"
ENV NBEMBED_HUB_STATE_DIR=/srv/nbembed \
    NBEMBED_HUB_BIND_URL=http://0.0.0.0:8000 \
    NBEMBED_HUB_PROXY_COMMAND=/opt/chp/node_modules/.bin/configurable-http-proxy \
    NBEMBED_HUB_PYTHON=/opt/jupyter/bin/python \
    NBEMBED_HUB_SINGLEUSER_PYTHON=/opt/jupyter/bin/python \
    NBEMBED_HUB_FAST_READINESS_POLL=false
WORKDIR /srv/nbembed
EXPOSE 8000
CMD ["/bin/sh", "-c", "mkdir -p /srv/nbembed/secrets && exec jupyterhub -f /opt/jupyter/lib/python3.11/site-packages/infra/hub/jupyterhub_config.py"]
