# syntax=docker/dockerfile:1
#
# The elcrec image. Every process of the pipeline is a subcommand of the one
# entry point, picked by the container's command: `ingest`, `trainer`,
# `topics`, `replay`, `health`. Settings come from ELCREC_* variables (see the
# README's settings tables). The build context is the repository root:
#
#   docker build -t elcrec:0.1.0 .
#
# PyTorch comes from the index named by TORCH_INDEX: CPU wheels by default (a
# fraction of the size of the CUDA ones). For a CUDA trainer image name a CUDA
# index, run with GPUs and set ELCREC_TRAINER_DEVICE=cuda:
#
#   docker build -t elcrec:0.1.0-cuda \
#       --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu126 .

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

# -- build: a virtual environment with elcrec and its dependencies ------------
FROM ${PYTHON_IMAGE} AS build

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH_SPEC="torch>=2.2"
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/elcrec
ENV PATH=/opt/elcrec/bin:$PATH

# PyTorch first and from its own index; the project's `torch>=2.2` is then
# already satisfied and pip leaves it alone.
RUN pip install --index-url "${TORCH_INDEX}" "${TORCH_SPEC}"

WORKDIR /src
COPY pyproject.toml README.md ./
COPY elcrec ./elcrec
COPY stream ./stream
COPY state ./state
COPY consumers ./consumers
RUN pip install . && elcrec --help > /dev/null

# -- runtime --------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

ENV PATH=/opt/elcrec/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
COPY --from=build /opt/elcrec /opt/elcrec

# A fixed non-root uid, so volume and securityContext settings can name it.
# /data/state and /data/trainer exist in the image owned by that user: an empty
# named volume mounted there starts with this ownership.
RUN groupadd --gid 10001 elcrec \
    && useradd --uid 10001 --gid 10001 --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin elcrec \
    && mkdir -p /data/state /data/trainer \
    && chown -R 10001:10001 /data
USER 10001:10001
WORKDIR /data

# Where ingest keeps its RocksDB state and the trainer its checkpoint and models.
ENV ELCREC_STATE_DIR=/data/state \
    ELCREC_TRAINER_WORK_DIR=/data/trainer

# Metrics: ingest on 9108, the trainer on 9109 (set by the compose file and the
# manifests through ELCREC_METRICS_PORT and ELCREC_TRAINER_METRICS_PORT).
EXPOSE 9108 9109

# Checks the process named by ELCREC_ROLE (ingest or trainer) through its
# metrics endpoint; containers without a long-running role disable it.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["elcrec", "health"]

ENTRYPOINT ["elcrec"]
CMD ["--help"]
