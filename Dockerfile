# The gateway image used by fly.toml (and any container platform).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml setup.py README.md ./
COPY gateway ./gateway
COPY ingress ./ingress
COPY providers ./providers
COPY models ./models
COPY media ./media
# The compiled build (gateway/native.py): mypyc turns the frame-path modules into C
# extensions inside the wheel; gcc is needed only while building.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && pip install --no-cache-dir 'mypy>=1.11' setuptools wheel \
    && TELEPATH_COMPILE=1 pip install --no-cache-dir --no-build-isolation . \
    && pip uninstall -y mypy \
    && apt-get purge -y gcc libc6-dev && apt-get autoremove -y && rm -rf /var/lib/apt/lists/*
RUN useradd --system --home /data telepath && mkdir -p /data && chown telepath /data
USER telepath
EXPOSE 8080 5060/udp 5060/tcp
CMD ["telepath", "serve"]
