# syntax=docker/dockerfile:1
# The single-user server KubeSpawner starts for each hub user:
#
#   docker build -f deploy/docker/singleuser.Dockerfile -t nbembed/singleuser:0.1.0 .
#
# JupyterHub's singleuser entry point, Jupyter Server, Notebook 7 and JupyterLab 4
# at the versions pyproject.toml pins, nbembed's bridge labextension (built from
# infra/bridge in the first stage), JupyterLab's embedded-mode overrides, and the
# server-side pieces in infra/hub/singleuser_python (the save hook, the inputs
# extension, the import-time stand-in) on PYTHONPATH. The hub's spawner args turn
# them on (deploy/helm/values-z2jh.yaml). Runs as jovyan (uid 1000), as z2jh expects.

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
CMD ["jupyterhub-singleuser"]
