"""The fakes stay what the kernel boundary says (kernel/api.py), as the real classes do.

A fake that drifts from the real class (a renamed method, a new parameter) would let
the unit tier pass against something pynet never meets: this fails first.
"""

from __future__ import annotations

import inspect

import pytest

from fakes import FakeLinks, FakeNft, FakePolice, FakeProber, FakeSysctl
from pynet.kernel.api import LinksAPI, NftAPI, PoliceAPI, ProbeAPI, SysctlAPI, TcAPI


def _methods(proto) -> dict[str, inspect.Signature]:
    return {name: inspect.signature(fn) for name, fn in vars(proto).items()
            if callable(fn) and not name.startswith("_") or name == "__call__" and name in vars(proto)}


def _params(sig: inspect.Signature) -> list[tuple[str, object]]:
    return [(p.name, p.default) for p in sig.parameters.values() if p.name != "self"]


def _real(kind: str):
    if kind == "links":
        from pynet.kernel.links import Links
        return Links
    if kind == "probe":
        from pynet.kernel.probe import Prober
        return Prober
    if kind == "police":
        from pynet.kernel.police import Police
        return Police
    from pynet.kernel.nft import Nft
    return Nft


@pytest.mark.parametrize("proto, fake, real", [(LinksAPI, FakeLinks, "links"), (TcAPI, FakeLinks, "links"),
                                               (NftAPI, FakeNft, "nft"), (ProbeAPI, FakeProber, "probe"),
                                               (PoliceAPI, FakePolice, "police")])
def test_fake_and_real_class_match_the_protocol(proto, fake, real):
    wanted = _methods(proto)
    assert wanted, "the Protocol declares no method"
    for cls in (fake, _real(real)):
        for name, sig in wanted.items():
            impl = getattr(cls, name, None)
            assert impl is not None, f"{cls.__name__} lacks {name}"
            assert inspect.iscoroutinefunction(impl) == inspect.iscoroutinefunction(getattr(proto, name)), \
                f"{cls.__name__}.{name}: async-ness differs from {proto.__name__}"
            assert _params(inspect.signature(impl)) == _params(sig), \
                f"{cls.__name__}.{name}{inspect.signature(impl)} differs from {proto.__name__}.{name}{sig}"


def test_what_the_core_calls_is_in_the_protocol():
    """Every kernel method a mode or the core uses is declared (else a fake could miss it unseen)."""
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[2] / "plugin" / "pynet"
    used, policing = set(), set()
    for path in list((root / "modes").glob("*.py")) + list((root / "core").glob("*.py")):
        used |= set(re.findall(r"self\.links\.(\w+)\(", path.read_text()))
        policing |= set(re.findall(r"self\.police\.(\w+)\(", path.read_text()))
    assert used and policing, "no kernel calls found: the scan is broken"
    declared = set(_methods(LinksAPI)) | set(_methods(TcAPI))
    assert used <= declared, f"used but not in LinksAPI/TcAPI: {sorted(used - declared)}"
    assert policing <= set(_methods(PoliceAPI)), f"used but not in PoliceAPI: {sorted(policing - set(_methods(PoliceAPI)))}"


def test_fake_sysctl_is_a_sysctl():
    assert _params(inspect.signature(FakeSysctl.__call__)) == _params(inspect.signature(SysctlAPI.__call__))
