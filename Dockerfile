# One image for every noops service (for docker-compose.yml, on machines that can pull images).
FROM python:3.11-slim
WORKDIR /opt/noops
COPY pyproject.toml README.md ./
COPY libs ./libs
COPY services ./services
COPY devtools ./devtools
RUN pip install --no-cache-dir .
ENV NOOPS_HTTP_HOST=0.0.0.0
# The service to run is the command, e.g. `noops-placer`.
CMD ["noops-gateway"]
