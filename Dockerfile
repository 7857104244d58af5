# The kpi-stream worker (and the `kpi` command) as an image.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY stream ./stream
COPY schemas ./schemas
# uid 1000: deploy/k8s runs the pod as that numeric user (runAsNonRoot needs a number).
RUN pip install --no-cache-dir . && useradd --create-home --uid 1000 kpi
USER 1000
# Inside a container the web server must listen beyond loopback; publish the port on
# the host's loopback only (see docker-compose.yml).
ENV KPI_WEB_HOST=0.0.0.0 \
    KPI_DATA_DIR=/home/kpi/state
EXPOSE 6066
CMD ["kpi", "worker", "--loglevel", "info"]
