# envcheck in the official PyTorch CUDA runtime image: `envcheck doctor` as the default command and
# `envcheck healthcheck` as the container's HEALTHCHECK.
#
#   docker build -t envcheck .
#   docker run --rm --gpus all --shm-size=16g envcheck                 # the full doctor
#   docker run -d --gpus all --shm-size=16g --name job envcheck sleep infinity
#   docker inspect --format '{{json .State.Health}}' job
#
# A lab spec is enforced by the healthcheck when one is found: put it at docker/lab.toml before
# building (it is copied to /etc/envcheck/lab.toml), or mount one and name it at run time:
#   docker run ... -v $PWD/lab.toml:/lab.toml:ro -e ENVCHECK_SPEC=/lab.toml envcheck
#
# The base is pinned to a release tag (never `latest`): a rebuilt image must be the image you tested.
FROM pytorch/pytorch:2.9.1-cuda12.8-cudnn9-runtime

LABEL org.opencontainers.image.title="envcheck" \
      org.opencontainers.image.description="Is this machine ready for deep-learning work? envcheck doctor says."

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY pyproject.toml README.md LICENSE /opt/envcheck-src/
COPY envcheck /opt/envcheck-src/envcheck
COPY docker/ /etc/envcheck/

# envcheck must never replace the torch it is meant to diagnose: it does not depend on torch, the
# image's torch is pinned as a constraint, and the build fails if torch's version moved anyway.
RUN set -eu; \
    python -m pip freeze | grep -iE '^(torch|torchvision|torchaudio)==' > /tmp/keep-torch.txt; \
    before="$(python -c 'import importlib.metadata as m; print(m.version("torch"))')"; \
    python -m pip install --no-cache-dir --constraint /tmp/keep-torch.txt /opt/envcheck-src; \
    after="$(python -c 'import importlib.metadata as m; print(m.version("torch"))')"; \
    test "$before" = "$after"; \
    rm -rf /opt/envcheck-src /tmp/keep-torch.txt; \
    useradd --create-home --uid 1000 --shell /bin/bash lab

# Everything from here on, the healthcheck included, runs as an ordinary user: envcheck needs no root.
USER lab
WORKDIR /home/lab

# `envcheck healthcheck` runs the quick doctor (host, driver, GPUs, lab spec; never torch) under an
# 8 s deadline and prints one line. It exits 0 or 1 by itself; `|| exit 1` also maps anything else
# (a killed process, a missing binary) to 1, because Docker reserves exit code 2.
# The timeout leaves room for the deadline on a loaded node; the start period covers driver start-up.
HEALTHCHECK --interval=30s --timeout=20s --start-period=30s --retries=3 \
    CMD envcheck healthcheck --require-gpu --deadline 8 || exit 1

CMD ["envcheck", "doctor"]
