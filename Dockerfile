# One image for every Apex service: `docker run apex <service>` runs `python -m apex_<service>`
# (gateway, auth, orchestrator, agents, tools, persistence, ingest) and `docker run apex migrate`
# applies every schema (the migration job). The entry point is libs/cli/src/apex_cli/service.py.
# Multi-stage: dependencies are resolved with uv from the lock file in a build stage; the
# runtime stage is slim, holds only the virtual environment, and runs as a non-root user
# with a fixed uid (10001, what k8s/ runs it as).
FROM python:3.11-slim AS build
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /app
COPY pyproject.toml uv.lock ./
COPY libs libs
COPY services services
RUN --mount=type=cache,target=/root/.cache/uv uv sync --frozen --no-dev --no-editable

FROM python:3.11-slim AS runtime
RUN groupadd --system --gid 10001 apex \
    && useradd --system --uid 10001 --gid apex --home /app --shell /usr/sbin/nologin apex
WORKDIR /app
COPY --from=build --chown=apex:apex /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    APEX_HTTP_HOST=0.0.0.0 APEX_LOG_FORMAT=json
USER 10001:10001
EXPOSE 8000 8001 8002 8003 8004 8005 8006
ENTRYPOINT ["python", "-m", "apex_cli.service"]
CMD ["gateway"]
