"""What the runner (bench.py, measure/) and the report (report/) both know: keys of results.json and
the names of what the runner makes that the report prints."""

NAME = "pnbb"  # Docker networks/containers and namespaces of the bench: pnbb-*
LAN_PARENT = f"{NAME}par"  # section 6: the host's uplink into the LAN, the `parent` of the LAN modes

# section 6: each pynet LAN mode and its baseline, in the order they are measured and reported
LAN_PAIRS = [("pynet nat", "docker bridge"), ("pynet transparent", "hand-built macvlan"),
             ("pynet l2bridge", "hand-built routed veth")]

# sections 3 and 7: the samples of a published port's own container address (no NAT: the floor), and
# section 3's names of the two ways a `docker run -p` publishes (results' "publish" keys are "how|N")
NO_NAT = "container IP, no NAT"
PUBLISH_HOW = {"pynet": "pynet docker run -p", "docker": "docker bridge docker run -p"}
