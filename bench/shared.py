"""What the runner (bench.py, measure/) and the report (report/) both know: keys of results.json and
the names of what the runner makes that the report prints."""

NAME = "pnbb"  # Docker networks/containers and namespaces of the bench: pnbb-*
LAN_PARENT = f"{NAME}par"  # section 6: the host's uplink into the LAN, the `parent` of the LAN modes

# section 6: each pynet LAN mode and its baseline, in the order they are measured and reported
LAN_PAIRS = [("pynet nat", "docker bridge"), ("pynet transparent", "hand-built macvlan"),
             ("pynet l2bridge", "hand-built routed veth")]

# section 8: the swarm bed's name (scripts/swarm.sh SWARM_NAME: namespaces pnbb-swarm-*), and each
# pynet network across the swarm with Docker's own counterpart
SWARM_BED = f"{NAME}-swarm"
SWARM_PAIRS = [("pynet overlay", "docker overlay"), ("pynet l2bridge", "docker macvlan")]

# sections 3 and 7: the samples of a published port's own container address (no NAT: the floor), and
# section 3's names of the two ways a `docker run -p` publishes (results' "publish" keys are "how|N")
NO_NAT = "container IP, no NAT"
PUBLISH_HOW = {"pynet": "pynet docker run -p", "docker": "docker bridge docker run -p"}
