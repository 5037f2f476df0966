# syntax=docker/dockerfile:1
# tierline: a slim, non-root image built from pyproject.toml (no dev dependencies).

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/tierline
COPY pyproject.toml README.md ./
COPY service ./service
COPY webhooks ./webhooks
COPY shopify_client ./shopify_client
RUN /opt/tierline/bin/pip install --upgrade pip \
 && /opt/tierline/bin/pip install .

FROM python:3.11-slim AS runtime
ENV PATH=/opt/tierline/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TIERLINE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080
RUN groupadd --system tierline && useradd --system --gid tierline --home-dir /app --create-home tierline
COPY --from=build /opt/tierline /opt/tierline
WORKDIR /app
USER tierline
EXPOSE 8080
# `serve` also runs the worker unless TIERLINE_WORKER=off (fly.toml runs workers separately).
CMD ["tierline", "serve"]
