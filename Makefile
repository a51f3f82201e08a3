# pynet — see README.md
PY      := .venv/bin/python
export PATH := /usr/sbin:/usr/bin:/sbin:/bin:$(PATH)

# Engines for the e2e tier: all (Docker 20.10, the system's, then Docker 28 from Debian unstable,
# side by side: scripts/engine.sh), or one of them: make test ENGINE=20 / ENGINE=28.
ENGINE  ?= all
export ENGINE PYTEST_ARGS

.PHONY: install run test test-unit test-netns test-e2e images dockerd engine28 bench bench-report clean

install:
	bash scripts/install.sh

dockerd: install
	bash scripts/dockerd.sh

images: dockerd
	bash scripts/images.sh

# Run pynet for real: legacy plugin socket /run/docker/plugins/pynet.sock.
run: images
	.venv/bin/pynet serve $(if $(CONFIG),--config $(CONFIG))

# unit + netns once, then e2e on each engine of ENGINE (scripts/test.sh; Docker 28 is fetched
# from Debian unstable and started next to 20.10 when needed).
test: images
	bash scripts/test.sh unit netns e2e

test-unit: install
	bash scripts/test.sh unit

test-netns: install
	bash scripts/test.sh netns

test-e2e: images
	bash scripts/test.sh e2e

# Docker 28 + Compose 2.x from Debian unstable, running next to the system dockerd.
engine28: install
	bash scripts/engine.sh fetch 28
	bash scripts/engine.sh start 28

# Benchmarks -> bench/report.md + PNGs (QUICK=1: a few minutes; full: ~20 min). Installs iperf3, matplotlib.
bench: images
	bash scripts/bench-deps.sh
	$(PY) bench/bench.py $(if $(QUICK),--quick,--proxy-off)

# report.md + PNGs again from bench/results.json, measuring nothing (no root, no dockerd): for report changes.
bench-report: install
	bash scripts/bench-deps.sh charts
	$(PY) bench/bench.py --report-only

clean:
	rm -rf .venv build *.egg-info plugin/*.egg-info .pytest_cache

# Managed plugin (scripts/plugin.sh): build/plugin = rootfs + config.json, then
# `docker plugin create pynet build/plugin` (an old `pynet` is removed first) and enable.
# Networks: docker network create -d pynet:latest NET (Docker 20.10 needs the tag).
.PHONY: plugin plugin-rm
plugin: install dockerd
	bash scripts/plugin.sh install pynet

plugin-rm:
	bash scripts/plugin.sh rm pynet

# A swarm of N (2-3) Docker 28 nodes on a namespace LAN (scripts/swarm.sh; SWARM_NAME, default pnsw),
# the pynet managed plugin pushed to the bed's registry and installed on every node twice: as `pynet`
# (local scope) and as `pynet-overlay` (PYNET_SCOPE=global: mode=overlay):
#   scripts/swarm.sh docker 1 network create ... ; scripts/swarm.sh status ; make swarm-down
.PHONY: swarm-up swarm-down
N ?= 2
swarm-up: images
	bash scripts/swarm.sh up $(N)
	bash scripts/plugin.sh build build/plugin
	bash scripts/swarm.sh push pynet build/plugin
	bash scripts/swarm.sh install pynet 10.88.0.1:5000/pynet:latest
	bash scripts/swarm.sh install pynet-overlay 10.88.0.1:5000/pynet:latest PYNET_SCOPE=global
	bash scripts/swarm.sh plugin-wait pynet pynet-overlay

swarm-down:
	bash scripts/swarm.sh down
