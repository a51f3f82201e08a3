"""ports.py + wire.portmap: every -p/-P form as Docker sends it, host-port choice, conflicts."""

from __future__ import annotations

import socket

import pytest

from fakes import EP_1, EP_2, EP_3, ID_A, ID_B, pm
from pynet import ports
from pynet.api import wire
from pynet.errors import Conflict, InvalidOption, InvalidRequest
from pynet.model import Binding, Endpoint, Network, PortMapping, Subnet

RANGE = (40000, 40009)


def no_probe(family, host_ip, proto, port):
    return None


def net(net_id=ID_A, host_binding="") -> Network:
    return Network(id=net_id, mode="nat", bridge="pn-n" + net_id[:11], host_binding_ipv4=host_binding,
                   v4=[Subnet("172.30.0.0/24", "172.30.0.1/24")], v6=[Subnet("fd00:30::/64", "fd00:30::1/64")])


def ep(ep_id=EP_1, ipv4="172.30.0.2/24", ipv6="") -> Endpoint:
    return Endpoint(id=ep_id, network_id=ID_A, host_if="h", peer_if="k", mac="02:42:ac:1e:00:02", ipv4=ipv4,
                    ipv6=ipv6)


def alloc(items, n=None, e=None, index=None, probe=no_probe, **kw) -> list[Binding]:
    return ports.allocate(n or net(), e or ep(), wire.portmap(items), index if index is not None
                          else ports.PortIndex(), kw.pop("port_range", RANGE), probe, **kw)


def view(bindings) -> list[tuple]:
    return [(b.proto, b.family, b.host_ip, b.host_port, b.container_ip, b.container_port) for b in bindings]


# ---------------------------------------------------------------- Docker's forms

def test_p_N_host_port_from_range():  # -p 80
    assert view(alloc([pm(80)])) == [("tcp", 4, "", 40000, "172.30.0.2", 80)]


def test_p_n_N():  # -p 8080:80
    assert view(alloc([pm(80, 8080)])) == [("tcp", 4, "", 8080, "172.30.0.2", 80)]


def test_p_n_N_without_host_port_end():  # some engines leave HostPortEnd 0 for a single port
    assert view(alloc([pm(80, 8080, end=0)])) == [("tcp", 4, "", 8080, "172.30.0.2", 80)]


def test_p_ip__N():  # -p 127.0.0.1::80
    assert view(alloc([pm(80, 0, host_ip="127.0.0.1")])) == [("tcp", 4, "127.0.0.1", 40000, "172.30.0.2", 80)]


def test_p_ip_n_N():  # -p 127.0.0.1:8080:80
    assert view(alloc([pm(80, 8080, host_ip="127.0.0.1")])) == [("tcp", 4, "127.0.0.1", 8080, "172.30.0.2", 80)]


def test_p_unspecified_ip_means_every_address():  # -p 0.0.0.0:8080:80
    assert view(alloc([pm(80, 8080, host_ip="0.0.0.0")])) == [("tcp", 4, "", 8080, "172.30.0.2", 80)]


def test_p_range_to_range():  # -p 8000-8002:80-82 arrives as one item per port
    got = alloc([pm(80 + i, 8000 + i) for i in range(3)])
    assert [(b.host_port, b.container_port) for b in got] == [(8000, 80), (8001, 81), (8002, 82)]


def test_p_host_range_to_one_port_takes_first_free():  # -p 8000-8009:80
    index = ports.PortIndex()
    alloc([pm(80, 8000)], e=ep(EP_2, "172.30.0.3/24"), index=index)
    got = alloc([pm(80, 8000, end=8009)], index=index)
    assert view(got) == [("tcp", 4, "", 8001, "172.30.0.2", 80)]


def test_p_host_range_all_taken():
    index = ports.PortIndex()
    alloc([pm(80, 8000), pm(81, 8001)], e=ep(EP_2, "172.30.0.3/24"), index=index)
    with pytest.raises(Conflict, match=r"no free host port for 80/tcp in 8000-8001") as ei:
        alloc([pm(80, 8000, end=8001)], index=index)
    assert EP_2[:12] in str(ei.value)


@pytest.mark.parametrize("proto, name", [(6, "tcp"), (17, "udp"), (132, "sctp")])
def test_protocols(proto, name):  # -p 53:53/udp, -p 9:9/sctp
    assert view(alloc([pm(53, 5353, proto=proto)])) == [(name, 4, "", 5353, "172.30.0.2", 53)]


def test_dual_stack_container_gets_v4_and_v6():  # -p 8080:80 on an --ipv6 network
    got = alloc([pm(80, 8080)], e=ep(ipv6="fd00:30::2/64"))
    assert view(got) == [("tcp", 4, "", 8080, "172.30.0.2", 80), ("tcp", 6, "", 8080, "fd00:30::2", 80)]


def test_ipv6_host_ip():  # -p [::1]:8080:80, -p [2001:db8::1]::80
    e = ep(ipv6="fd00:30::2/64")
    assert view(alloc([pm(80, 8080, host_ip="::1")], e=e)) == [("tcp", 6, "::1", 8080, "fd00:30::2", 80)]
    assert view(alloc([pm(80, 0, host_ip="2001:DB8::1")], e=e)) == [("tcp", 6, "2001:db8::1", 40000,
                                                                      "fd00:30::2", 80)]
    assert view(alloc([pm(80, 8080, host_ip="::")], e=e)) == [("tcp", 6, "", 8080, "fd00:30::2", 80)]


def test_ipv6_host_ip_needs_ipv6_container():
    with pytest.raises(InvalidOption, match=r"--ipv6"):
        alloc([pm(80, 8080, host_ip="::1")])


BUG_SAME_EP = ("BUG ports.py:176 (_choose -> PortIndex.holder(..., ignore_ep=ep_id), ports.py:92): bindings that "
               "allocate() just made for this endpoint are ignored, so two mappings of one container get the same "
               "host port; nft then refuses the batch (same map key, other value)")


def test_capital_P_one_exposed_port():  # -P with EXPOSE 80
    assert view(alloc([pm(80)])) == [("tcp", 4, "", 40000, "172.30.0.2", 80)]


def test_capital_P_each_exposed_port_gets_its_own():  # -P with EXPOSE 80 443 53/udp
    got = alloc([pm(80), pm(443), pm(53, proto=17)])
    assert [(b.proto, b.host_port, b.container_port) for b in got] == [("tcp", 40000, 80), ("tcp", 40001, 443),
                                                                       ("udp", 40000, 53)]


def test_host_binding_ipv4_default():
    got = alloc([pm(80, 8080)], n=net(host_binding="127.0.0.1"))
    assert view(got) == [("tcp", 4, "127.0.0.1", 8080, "172.30.0.2", 80)]
    got = alloc([pm(80, 8080, host_ip="10.0.0.5")], n=net(host_binding="127.0.0.1"))
    assert got[0].host_ip == "10.0.0.5"  # an explicit -p IP wins


def test_same_host_port_twice_in_one_container():  # -p 8080:80 -p 8080:81
    with pytest.raises(Conflict, match="8080/tcp"):
        alloc([pm(80, 8080), pm(81, 8080)])


def test_range_exhausted():
    index = ports.PortIndex()
    alloc([pm(1)], e=ep(EP_2, "172.30.0.3/24"), index=index, port_range=(40000, 40001))
    alloc([pm(2)], e=ep(EP_3, "172.30.0.4/24"), index=index, port_range=(40000, 40001))
    with pytest.raises(Conflict, match=r"no free host port for 80/tcp in 40000-40001"):
        alloc([pm(80)], index=index, port_range=(40000, 40001))


# ---------------------------------------------------------------- conflicts

def test_conflict_names_port_and_holder():
    index = ports.PortIndex()
    alloc([pm(80, 8080)], n=net(ID_B), e=ep(EP_2, "172.30.0.3/24"), index=index)
    with pytest.raises(Conflict) as ei:
        alloc([pm(8000, 8080)], index=index)
    msg = str(ei.value)
    assert "0.0.0.0:8080/tcp is already published by pynet" in msg
    assert f"endpoint {EP_2[:12]} of network {ID_B[:12]}" in msg
    assert "-> 172.30.0.3:80" in msg
    assert "pick another host port" in msg and "pynet ports" in msg


def test_conflicts_by_address():
    index = ports.PortIndex()
    alloc([pm(80, 8080, host_ip="127.0.0.1")], e=ep(EP_2, "172.30.0.3/24"), index=index)
    # Another specific address, another protocol, another family: all free.
    alloc([pm(80, 8080, host_ip="10.0.0.1")], e=ep(EP_3, "172.30.0.4/24"), index=index)
    alloc([pm(80, 8080, proto=17)], e=ep(EP_3, "172.30.0.4/24"), index=index)
    alloc([pm(80, 8080, host_ip="::1")], e=ep(EP_3, "172.30.0.4/24", "fd00:30::4/64"), index=index)
    # Every address (0.0.0.0) overlaps 127.0.0.1, and the same address collides.
    for host_ip in ("", "127.0.0.1"):
        with pytest.raises(Conflict, match="127.0.0.1:8080/tcp|0.0.0.0:8080/tcp"):
            alloc([pm(80, 8080, host_ip=host_ip)], index=index)


def test_host_process_conflict_message():
    def busy(family, host_ip, proto, port):
        return f"a host process already uses {ports.fmt_host(family, host_ip, port)}/{proto}" if port == 8080 else None

    with pytest.raises(Conflict, match=r"cannot publish 0.0.0.0:8080/tcp: a host process already uses "
                                       r"0.0.0.0:8080/tcp; pick another host port"):
        alloc([pm(80, 8080)], probe=busy)
    # With host port 0 the busy port is skipped.
    assert alloc([pm(80)], probe=lambda f, i, p, port: "busy" if port == 40000 else None)[0].host_port == 40001


def test_failed_allocation_leaves_index_unchanged():
    index = ports.PortIndex()
    alloc([pm(80, 8080)], e=ep(EP_2, "172.30.0.3/24"), index=index)
    before = len(index)
    with pytest.raises(Conflict):
        alloc([pm(81, 8081), pm(82, 8082), pm(80, 8080)], index=index)  # the third one collides
    assert len(index) == before
    assert index.holder(4, "", "tcp", 8081) is None


def test_same_endpoint_does_not_conflict_with_itself():
    index = ports.PortIndex()
    first = alloc([pm(80, 8080)], index=index)
    assert index.holder(4, "", "tcp", 8080).endpoint_id == EP_1
    assert index.holder(4, "", "tcp", 8080, ignore_ep=EP_1) is None
    assert first


def test_retry_keeps_chosen_host_ports():
    """ProgramExternalConnectivity again (Docker retries): the same host ports come back."""
    index = ports.PortIndex()
    first = alloc([pm(80), pm(443)], e=ep(ipv6="fd00:30::2/64"), index=index)
    for b in first:
        index.remove(EP_1, b)
    again = alloc([pm(80), pm(443)], e=ep(ipv6="fd00:30::2/64"), index=index, keep=first)
    assert view(again) == view(first)


def test_index_from_networks_and_remove():
    n = net()
    e = ep()
    e.bindings = [Binding("tcp", 4, "", 8080, "172.30.0.2", 80), Binding("udp", 4, "", 8080, "172.30.0.2", 80)]
    n.endpoints[e.id] = e
    index = ports.PortIndex.from_networks([n])
    assert len(index) == 2
    index.remove(EP_1, e.bindings[0])
    assert len(index) == 1 and index.holder(4, "", "tcp", 8080) is None
    assert index.holder(4, "", "udp", 8080).network_id == ID_A


# ---------------------------------------------------------------- the real probe (no root needed)

def test_probe_sees_a_listening_host_process():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert ports.host_port_free(4, "127.0.0.1", "tcp", port) == f"a host process already uses 127.0.0.1:{port}/tcp"
    assert ports.host_port_free(4, "127.0.0.1", "tcp", port) is None


def test_probe_foreign_address():
    assert ports.host_port_free(4, "192.0.2.77", "tcp", 40000) == "192.0.2.77 is not an address of this host"


def test_probe_sctp_is_not_probed():
    assert ports.host_port_free(4, "", "sctp", 1) is None


def test_fmt_host():
    assert ports.fmt_host(4, "", 80) == "0.0.0.0:80"
    assert ports.fmt_host(6, "", 80) == "[::]:80"
    assert ports.fmt_host(6, "::1", 80) == "[::1]:80"


# ---------------------------------------------------------------- portmap validation

@pytest.mark.parametrize("item, match", [
    (pm(80, proto=1), "port protocol 1 is not tcp, udp or sctp"),
    (pm(0), "container port must be 1-65535, got 0"),
    (pm(70000), "container port must be 0-65535, got 70000"),
    (pm(80, 70000), "host port must be 0-65535"),
    (pm(80, -1), "host port must be 0-65535"),
    (dict(pm(80), Port=True), "container port must be 0-65535, got True"),
    (dict(pm(80), Port="80"), "container port"),
    (pm(80, 8080, host_ip="localhost"), "host IP 'localhost' of -p is not an IP address"),
    (pm(80, 8009, end=8000), "host port range 8009-8000 ends before it starts"),
])
def test_portmap_refused(item, match):
    with pytest.raises(InvalidOption, match=match):
        wire.portmap([item])


def test_portmap_shapes():
    assert wire.portmap(None) == []
    with pytest.raises(InvalidRequest):
        wire.portmap({"Port": 80})
    with pytest.raises(InvalidRequest):
        wire.portmap(["80"])


# ---------------------------------------------------------------- `pynet port add` specs

@pytest.mark.parametrize("spec, mapping", [
    ("80", PortMapping("tcp", 80, "", 0, 0)),
    ("8080:80", PortMapping("tcp", 80, "", 8080, 8080)),
    ("8080:80/udp", PortMapping("udp", 80, "", 8080, 8080)),
    ("9:9/sctp", PortMapping("sctp", 9, "", 9, 9)),
    ("127.0.0.1::80", PortMapping("tcp", 80, "127.0.0.1", 0, 0)),
    ("127.0.0.1:8080:80/tcp", PortMapping("tcp", 80, "127.0.0.1", 8080, 8080)),
    ("[::1]:8080:80", PortMapping("tcp", 80, "::1", 8080, 8080)),
    ("[2001:DB8::1]::443", PortMapping("tcp", 443, "2001:db8::1", 0, 0)),
    (" 53/udp ", PortMapping("udp", 53, "", 0, 0)),
])
def test_parse_spec(spec, mapping):
    assert ports.parse_spec(spec) == mapping


@pytest.mark.parametrize("spec, match", [
    ("http", "must look like"), ("80/icmp", "must look like"), ("8000-8009:80", "must look like"),
    ("::1:8080:80", "must look like"), ("0", "must be 1-65535"), ("70000:80", "must be 1-65535"),
    ("999.1.1.1:80:80", "is not an IP address"),
])
def test_parse_spec_refused(spec, match):
    with pytest.raises(InvalidOption, match=match):
        ports.parse_spec(spec)
