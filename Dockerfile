# Echo's container image: the echo server on 0.0.0.0:8080, run as a non-root
# user, configured by ECHO_* variables, JSON access log on stdout.
#
#   docker build -t echo-server .
#   docker run --rm -p 127.0.0.1:8080:8080 echo-server
#
# The build stage turns the source into a wheel and installs it with its
# dependencies into a virtualenv; the runtime stage gets only that virtualenv,
# so no source tree, build tools or pip cache end up in the image. The two
# stages share one base image, so the virtualenv's interpreter links resolve.

ARG PYTHON_VERSION=3.12

FROM python:${PYTHON_VERSION}-slim AS build
WORKDIR /src
COPY pyproject.toml setup.cfg constraints.txt README.md LICENSE ./
COPY echo ./echo
COPY static ./static
# Every release installed here, build backend included, is pinned (scripts/pin
# refreshes the file), so builds on different days give the same image. The
# variable rather than -c also reaches the isolated environment the wheel is
# built in. This stage only: the runtime image has no pip to read it.
ENV PIP_CONSTRAINT=/src/constraints.txt
# The virtualenv gets no pip of its own: this stage's pip installs into it
# (--python), so the runtime holds Echo and its dependencies and nothing else.
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && python -m venv --without-pip /opt/echo \
    && python -m pip --python /opt/echo/bin/python install --no-cache-dir /wheels/*.whl

FROM python:${PYTHON_VERSION}-slim AS runtime

# Kept equal to echo.__version__ (tests/test_container.py checks it).
ARG VERSION=0.1.0
# The repository the image was built from: pass --build-arg SOURCE_URL=<url>
# (scripts/container-smoke passes the git remote's).
ARG SOURCE_URL=""
LABEL org.opencontainers.image.title="Echo" \
      org.opencontainers.image.description="HTTP request/response inspector and echo server" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.source="${SOURCE_URL}"

# A fixed numeric id, so Kubernetes' runAsNonRoot can verify it without a passwd lookup.
RUN groupadd --system --gid 10001 echo \
    && useradd --system --no-log-init --uid 10001 --gid echo --no-create-home --shell /usr/sbin/nologin echo \
    && install -d -o 10001 -g 10001 -m 0750 /data

# Where an SQLite history lives (ECHO_STORE=sqlite:////data/echo.db): mount a
# volume here and the history survives the container. Owned by the image's
# user, so a fresh named volume (which copies this directory) is writable.
VOLUME /data

COPY --from=build /opt/echo /opt/echo

ENV PATH="/opt/echo/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ECHO_HOST=0.0.0.0 \
    ECHO_PORT=8080 \
    ECHO_LOG=json

USER 10001:10001
EXPOSE 8080

# `echo-server health` asks the address the server really bound (from its
# runtime file), so flags such as --port or --ui-prefix work as well as ECHO_*
# variables. It checks /_/healthz: unhealthy while a Redis store is unreachable
# (or an SQLite file is not writable)
# (`docker ps` shows it; use `echo-server health --live` to check only that it serves).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["echo-server", "health"]

# Exec form: the server is PID 1 and gets SIGTERM from `docker stop` itself.
CMD ["echo-server"]
