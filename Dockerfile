# syntax=docker/dockerfile:1
# darkroom's image, in two variants (README, "Running it for others"):
#
#   docker build -t darkroom:cpu .                                  # API nodes, preview and
#                                                                   # vendor-only workers
#   docker build -t darkroom:cuda --build-arg VARIANT=cuda .        # the diffusers worker
#
# It runs `darkroom serve` by default; `darkroom worker`, `darkroom migrate` and the operator
# commands are its arguments (`docker run darkroom:cpu accounts list`). Configuration comes from
# DARKROOM_* variables (and *_FILE for mounted secrets) only; /data is the data directory.
#
# Build arguments:
#   BASE             any image with python3 (3.11+) and its venv module; the default is the
#                    official Python image. The cuda variant needs no CUDA base: PyTorch's CUDA
#                    wheels carry the CUDA libraries, and the NVIDIA container toolkit brings
#                    the driver from the host.
#   VARIANT          cpu (extras server, postgres, s3) or cuda (those and diffusers, on torch
#                    from TORCH_INDEX_URL); deploy/image/requirements.py has the list
#   EXTRAS           more extras of pyproject.toml, comma-separated
#   TORCH_INDEX_URL  where the cuda variant's torch comes from (PyTorch's CUDA 12.8 wheels)
#   TORCH_SPEC       which torch, e.g. "torch==2.9.1" (default: the newest there)
#   WHEELS           a directory of wheels mounted into the build, to install from instead of
#                    an index (what `requirements.py --image VARIANT --build` lists, e.g. made
#                    with `pip download -d`): the tests build so, from a wheelhouse kept between
#                    runs. The cuda variant is built here, where no GPU and no PyTorch index
#                    can be reached, with this machine's CPU build of torch in the wheelhouse:
#     podman build --build-arg VARIANT=cuda --build-arg TORCH_SPEC=torch==2.13.0+cpu \
#       --build-arg WHEELS=/wheels -v "$WHEELHOUSE:/wheels:ro" -t darkroom:cuda .

ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS build
ARG VARIANT=cpu
ARG EXTRAS=""
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
ARG TORCH_SPEC=torch
ARG WHEELS=""
# pip byte-compiles what it installs: the pods' read-only file systems need no cache.
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
RUN python3 -m venv /opt/darkroom
# The dependencies first, in a layer that only a change to pyproject.toml rebuilds.
COPY pyproject.toml deploy/image/requirements.py ./
RUN --mount=type=cache,target=/root/.cache/pip \
    if [ -n "$WHEELS" ]; then export PIP_NO_INDEX=1 PIP_FIND_LINKS="$WHEELS"; fi \
    && if [ "$VARIANT" = cuda ] && [ -z "$WHEELS" ]; then \
      /opt/darkroom/bin/pip install --index-url "$TORCH_INDEX_URL" "$TORCH_SPEC"; \
    elif [ "$VARIANT" = cuda ]; then \
      /opt/darkroom/bin/pip install "$TORCH_SPEC"; \
    fi \
    && /opt/darkroom/bin/python requirements.py --image "$VARIANT" --extras "$EXTRAS" \
      > requirements.txt \
    && /opt/darkroom/bin/pip install -r requirements.txt
COPY README.md ./
COPY src ./src
RUN --mount=type=cache,target=/root/.cache/pip \
    if [ -n "$WHEELS" ]; then export PIP_NO_INDEX=1 PIP_FIND_LINKS="$WHEELS"; fi \
    && /opt/darkroom/bin/pip install --no-deps . \
    && /opt/darkroom/bin/pip uninstall --yes pip

FROM ${BASE}
ARG VARIANT=cpu
LABEL org.opencontainers.image.title="darkroom" \
      org.opencontainers.image.description="Self-hosted AI image generation: the Magic Hour v1 image API and the OpenAI images API" \
      org.opencontainers.image.licenses="Apache-2.0" \
      io.darkroom.variant="${VARIANT}"
# A numeric user (Kubernetes' runAsNonRoot can check it). /data is each node's data directory;
# /images is where compose mounts the image store the nodes share (DARKROOM_STORAGE_URL=/images).
RUN useradd --uid 10001 --user-group --home-dir /data --no-create-home --shell /usr/sbin/nologin darkroom \
    && mkdir -m 0700 /data /images \
    && chown darkroom:darkroom /data /images
COPY --from=build /opt/darkroom /opt/darkroom
COPY --chmod=0755 deploy/image/healthcheck /usr/local/bin/darkroom-healthcheck
ENV PATH=/opt/darkroom/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DARKROOM_HOST=0.0.0.0 \
    DARKROOM_PORT=8000 \
    DARKROOM_DATA_DIR=/data \
    HF_HOME=/data/huggingface \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000
# /readyz: the database answers and the node's loops run. A worker has no HTTP port unless it is
# given --metrics-port: its checks name that port (darkroom-healthcheck URL).
HEALTHCHECK --interval=10s --timeout=6s --start-period=60s --retries=3 CMD ["darkroom-healthcheck"]
# dumb-init is PID 1: it forwards SIGTERM to darkroom (whose worker drains on it) and reaps.
ENTRYPOINT ["dumb-init", "--", "darkroom"]
CMD ["serve"]
