# The gateway image used by fly.toml (and any container platform).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY ingress ./ingress
COPY providers ./providers
COPY models ./models
COPY media ./media
RUN pip install --no-cache-dir . && useradd --system --home /data telepath && mkdir -p /data && chown telepath /data
USER telepath
EXPOSE 8080 5060/udp 5060/tcp
CMD ["telepath", "serve"]
