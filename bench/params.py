"""The parameters of a run: name -> (--quick, full run); Bench.p holds the chosen ones."""

PARAMS = {
    "proto_cycles": (200, 1000),
    "proto_paced_cycles": (40, 150),  # section 1, again with a pause between cycles (PACE_S)
    "rss_every": (50, 100),
    "run_rounds": (5, 20),
    "par_rounds": (2, 5),
    "par_n": (10, 10),
    "rate_secs": (1.0, 3.0),
    "rate_conns": (32, 32),  # wrk -c: requests (each on a new connection) in flight
    "rate_samples": (2, 3),  # samples a target at each publish of 1,000 / 10,000 other ports
    "rate_rounds0": (4, 5),
    "publish_reps": (1, 2),
    "publish_reps_10k": (1, 1),  # section 7: 10,000 ports on each side (Docker's take minutes to publish)
    "iperf_secs": (1, 3),
    "iperf_rounds": (2, 3),
    "rec_endpoints": (100, 100),
    "rec_rounds": (3, 5),
    "swarm_rounds": (1, 3),
    "scrape_levels": ((0, 100, 1000), (0, 100, 1000)),
    "scrape_rounds": (10, 30),
    "limit_secs": (2, 4),
    "limit_rounds": (1, 2),
    "scale_levels": ((200,), (200, 1000)),  # section 11: containers on one network
    "scale_turns": ((1,), (3, 1)),  # section 11: turns per level (pynet, then Docker, order rotating)
}
