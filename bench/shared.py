"""What the runner (bench.py) and the report (report/) both know: keys of results.json."""

# section 6: each pynet LAN mode and its baseline, in the order they are measured and reported
LAN_PAIRS = [("pynet nat", "docker bridge"), ("pynet transparent", "hand-built macvlan"),
             ("pynet l2bridge", "hand-built routed veth")]
