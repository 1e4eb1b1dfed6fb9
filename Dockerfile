# Builder: resolve the locked dependencies and install tablehouse as a wheel into /app/.venv.
FROM python:3.11-slim AS builder

RUN pip install --no-cache-dir uv==0.13.8

# Bytecode is compiled here so the runtime image (read-only for the app user) starts fast.
# copy: the uv cache is a mount on another filesystem, hard links can't cross it.
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv

WORKDIR /app

# Dependencies first: this layer is rebuilt only when the lock changes.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-editable --no-install-project

# hatchling reads README.md for the package metadata.
COPY README.md ./
COPY src ./src
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-editable


# Runtime: the same base image, so the venv's python symlink still resolves.
FROM python:3.11-slim

RUN groupadd --system --gid 10001 tablehouse \
    && useradd --system --uid 10001 --gid tablehouse --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin tablehouse \
    && mkdir -p /var/lib/tablehouse \
    && chown tablehouse:tablehouse /var/lib/tablehouse

COPY --from=builder /app/.venv /app/.venv

ENV PATH="/app/.venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ENVIRONMENT=production \
    HOST=0.0.0.0 \
    PORT=8000 \
    DATA_DIR=/var/lib/tablehouse \
    DATABASE_URL=sqlite+aiosqlite:////var/lib/tablehouse/tablehouse.db \
    ANALYTICS_URL=chdb:////var/lib/tablehouse/analytics

WORKDIR /app
USER tablehouse
VOLUME ["/var/lib/tablehouse"]
EXPOSE 8000

# slim has no curl; urlopen raises (exit 1) on a refused connection or a non-2xx answer.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8000'), timeout=4)"]

# Migrate (waits for the database, idempotent) before serving; exec so the server gets signals.
CMD ["sh", "-c", "tablehouse db init && exec tablehouse serve"]
