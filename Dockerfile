# syntax=docker/dockerfile:1
# tierline: a slim, non-root image built from pyproject.toml (no dev dependencies).
# Built and smoke-tested by `make image` and `make image-test` (docs/operations.md).

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# The dependencies first, from pyproject.toml alone: a builder with a layer cache (Fly's) reuses
# this layer until they change.
COPY pyproject.toml ./
RUN python -m venv /opt/tierline \
 && python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb")); \
print("\n".join(p["project"]["dependencies"] + p["build-system"]["requires"]))' > /tmp/requirements.txt \
 && /opt/tierline/bin/pip install --upgrade pip \
 && /opt/tierline/bin/pip install -r /tmp/requirements.txt
# Then the package itself, without the network; the build tools leave the environment after it.
COPY README.md ./
COPY service ./service
COPY webhooks ./webhooks
COPY shopify_client ./shopify_client
RUN /opt/tierline/bin/pip install --no-deps --no-build-isolation . \
 && /opt/tierline/bin/pip uninstall --yes setuptools wheel \
 && /opt/tierline/bin/pip check

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
