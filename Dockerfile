# syntax=docker/dockerfile:1.7
# alignserve: the serving image (no torch, no training code).
#
#   docker build -t alignserve:cpu .                              # CPU (onnxruntime)
#   docker build --build-arg VARIANT=gpu -t alignserve:gpu .      # CUDA 12 + cuDNN 9 (onnxruntime-gpu)
#   docker build --build-arg MODEL_STORE=.bentoml/models -t alignserve:cpu-models .   # models baked in
#
# Without baked models, mount a model store (e.g. `.bentoml/models` after `make serve`) at
# /opt/alignserve/models. Settings are ALIGNSERVE_* environment variables (README).
ARG VARIANT=cpu

FROM python:3.11.14-slim-bookworm AS python-cpu

FROM nvidia/cuda:12.6.3-cudnn-runtime-ubuntu22.04 AS python-gpu
# The CUDA image is pinned by tag; Python 3.11 comes from Ubuntu's own archive.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
 && rm -rf /var/lib/apt/lists/* \
 && ln -s /usr/bin/python3.11 /usr/local/bin/python

# Dependencies first, from the pinned lock, so source changes reuse this layer.
# python-${VARIANT} is one of the two stages above, each pinned by tag.
# hadolint ignore=DL3006
FROM python-${VARIANT} AS deps
ARG VARIANT
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements/${VARIANT}.txt /tmp/requirements.txt
RUN --mount=type=cache,target=/root/.cache/pip \
    python -m venv /opt/venv \
 && /opt/venv/bin/pip install --requirement /tmp/requirements.txt

# hadolint ignore=DL3006
FROM python-${VARIANT} AS runtime
ARG MODEL_STORE=deploy/no-models
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    BENTOML_DO_NOT_TRACK=true \
    BENTOML_HOME=/var/lib/alignserve \
    ALIGNSERVE_MODEL_STORE=/opt/alignserve/models \
    ALIGNSERVE_FEEDBACK_DB=/var/lib/alignserve-feedback/feedback.sqlite3
# /var/lib/alignserve-feedback: mount a volume there to keep SQLite feedback past the
# container, or set ALIGNSERVE_FEEDBACK_DSN for PostgreSQL.
RUN groupadd --system --gid 10001 alignserve \
 && useradd --system --uid 10001 --gid alignserve --home-dir /app --shell /usr/sbin/nologin alignserve \
 && mkdir -p /var/lib/alignserve /var/lib/alignserve-feedback /opt/alignserve/models \
 && chown alignserve:alignserve /var/lib/alignserve /var/lib/alignserve-feedback
COPY --from=deps /opt/venv /opt/venv
WORKDIR /app
COPY models/ models/
COPY feedback/ feedback/
COPY service/ service/
COPY ${MODEL_STORE}/ /opt/alignserve/models/
USER 10001:10001
EXPOSE 3000
HEALTHCHECK --interval=15s --timeout=3s --start-period=120s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:3000/livez', timeout=2)"]
ENTRYPOINT ["python", "-m", "service", "--host", "0.0.0.0", "--port", "3000"]
