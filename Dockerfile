# Root filesystem of the pynet managed plugin. Built by scripts/plugin.sh
# (`make plugin`), which first makes build/wheels (pynet and its PyPI
# dependencies, fetched by the host's pip) and passes the host's apt sources as
# APT_SOURCES; then exports the image's filesystem next to config.json.
# Built by hand: `mkdir -p build/wheels` first; with no wheels there, pip
# installs from PyPI inside the build.

FROM debian:bookworm-slim AS base
# scripts/plugin.sh prunes dangling images with this label (older builds of this file), nothing else.
LABEL pynet.plugin.build=1
# sources.list lines ("deb URI SUITE main"); empty = the image's own sources.
ARG APT_SOURCES=""
RUN if [ -n "$APT_SOURCES" ]; then \
      rm -f /etc/apt/sources.list.d/*.sources; printf '%s\n' "$APT_SOURCES" >/etc/apt/sources.list; \
    fi

# python3-nftables is Debian's (not on PyPI): the venv sees it through --system-site-packages.
FROM base AS build
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv python3-nftables >/dev/null \
 && rm -rf /var/lib/apt/lists/*
COPY setup.cfg pyproject.toml /src/
COPY plugin/ /src/plugin/
COPY build/wheels/ /wheels/
RUN python3 -m venv --system-site-packages /opt/pynet/venv \
 && if ls /wheels/*.whl >/dev/null 2>&1; \
    then /opt/pynet/venv/bin/pip install -q --no-cache-dir --no-index --find-links /wheels pynet; \
    else /opt/pynet/venv/bin/pip install -q --no-cache-dir /src; fi \
 && /opt/pynet/venv/bin/pip uninstall -q -y pip setuptools

FROM base
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-nftables >/dev/null \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/pynet /opt/pynet
COPY scripts/plugin-entrypoint.sh /usr/local/bin/pynet-plugin
RUN /opt/pynet/venv/bin/python -c 'import nftables, pyroute2, aiohttp, yaml, prometheus_client, pynet.app' \
 && mkdir -p /run/docker/plugins /var/lib/pynet
ENV PATH=/opt/pynet/venv/bin:/usr/sbin:/usr/bin:/sbin:/bin
ENTRYPOINT ["/usr/local/bin/pynet-plugin"]
