"""Calls that arrive together (dockerd starts containers in parallel): locks hold, the kernel agrees."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from nslib import addr, new_id, network_body, portmap


def parallel(fn, items) -> list:
    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        return list(pool.map(fn, items))


def test_parallel_endpoints_on_one_network(host):
    net = host.create_network(91)
    ids = [new_id() for _ in range(12)]

    def create(i):
        return host.call("/NetworkDriver.CreateEndpoint", {
            "NetworkID": net.id, "EndpointID": ids[i], "Interface": {"Address": addr(91, 10 + i)}, "Options": {}})

    results = parallel(create, range(12))
    assert [s for s, _ in results] == [200] * 12, results
    assert len(host.links()) == 1 + 2 * 12
    assert {e["id"] for e in host.get(f"/pynet/v1/networks/{net.id}")["endpoints"]} == set(ids)

    def delete(ep_id):
        return host.call("/NetworkDriver.DeleteEndpoint", {"NetworkID": net.id, "EndpointID": ep_id})

    assert [s for s, _ in parallel(delete, ids)] == [200] * 12
    assert host.links() == [net.bridge]
    host.daemon.kill9()
    host.daemon.start()  # what was persisted agrees
    assert host.networks()[net.id]["endpoints"] == 0


def test_racing_overlapping_networks_only_one_wins(host):
    # Overlapping, not identical pools: identical ones mean the older network is a ghost Docker never got.
    bodies = [network_body(new_id(), pool=f"10.92.0.0/{bits}", gateway=f"10.92.0.1/{bits}")
              for bits in range(19, 25)]
    ids = [b["NetworkID"] for b in bodies]
    results = parallel(lambda b: host.call("/NetworkDriver.CreateNetwork", b), bodies)
    won = [i for i, (status, _) in zip(ids, results) if status == 200]
    assert len(won) == 1, results
    assert all("overlaps" in doc["Err"] for status, doc in results if status != 200)
    assert list(host.networks()) == won
    assert len(host.links()) == 1 and host.nft_elements("bridges") == host.links()


def test_racing_for_one_host_port_only_one_wins(host):
    net = host.create_network(93)
    ctrs = [host.run_container(net, 2 + i) for i in range(5)]

    def publish(ctr):
        return host.call("/NetworkDriver.ProgramExternalConnectivity", {
            "NetworkID": net.id, "EndpointID": ctr.ep_id,
            "Options": {"com.docker.network.portmap": portmap((8000, 18130))}})

    results = parallel(publish, ctrs)
    assert sorted(s for s, _ in results) == [200] + [500] * 4, results
    assert all("18130" in doc["Err"] for s, doc in results if s != 200)
    (b,) = host.get("/pynet/v1/ports")
    winner = next(c for c, (s, _) in zip(ctrs, results) if s == 200)
    assert b["container_ip"] == winner.ip
    assert len(host.nft_elements("pubany4")) == 1
