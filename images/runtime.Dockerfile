# The runtime every variant image is built on: Python 3.11, torch, the sandbox package, a non-root
# user. Python packages come only from the host-built wheelhouse (--no-index): containers may not
# reach a package index, and air-gapped GPU clusters cannot either.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONPATH=/opt/selfprog \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp

COPY wheels/ /tmp/wheels/
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/python -m pip install --no-index --no-cache-dir --find-links /tmp/wheels \
        -r /tmp/wheels/requirements.lock \
 && rm -rf /tmp/wheels \
 && /opt/venv/bin/python -c "import torch, numpy, pydantic; print('torch', torch.__version__)"

COPY sandbox/ /opt/selfprog/sandbox/
RUN python3 -m compileall -q /opt/selfprog/sandbox \
 && groupadd --gid 10001 sandbox \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin sandbox \
 && mkdir -p /program /out /data \
 && chown sandbox:sandbox /out

WORKDIR /program
USER 10001:10001
ENTRYPOINT ["/opt/venv/bin/python", "-m", "sandbox.harness"]
