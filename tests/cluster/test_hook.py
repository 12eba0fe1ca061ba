"""The core's cluster hook and the cluster package without Ray running (default test run)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pydotcompute import InvalidArgumentError, PyDotComputeError, RingKernelRuntime
from pydotcompute.cluster import Placement


def test_import_pydotcompute_does_not_import_ray() -> None:
    code = "import sys, pydotcompute, pydotcompute.cluster; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_cluster_must_be_a_cluster_backend() -> None:
    with pytest.raises(PyDotComputeError, match=r"cluster=42\): expected a cluster backend"):
        RingKernelRuntime(cluster=42)


def test_without_ray_the_error_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydotcompute import BackendUnavailableError
    from pydotcompute.cluster import RayCluster

    monkeypatch.setitem(sys.modules, "ray", None)  # an import of ray now fails
    with pytest.raises(BackendUnavailableError, match=r'needs Ray.*pip install -e "\.\[ray\]"'):
        RayCluster()


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("driver", Placement(driver=True)),
        ("gpu", Placement(gpu=True)),
        ("node:10.0.0.2", Placement(node="10.0.0.2")),
        ("host:pipeline", Placement(host="pipeline")),
        ({"resources": {"a100": 1}}, Placement(resources={"a100": 1})),
        (None, None),
    ],
)
def test_placement_shorthands(given: object, expected: Placement | None) -> None:
    assert Placement.parse(given) == expected


@pytest.mark.parametrize("bad", ["moon", "node:", {"planet": 1}, 3])
def test_a_placement_that_names_nothing_is_refused(bad: object) -> None:
    with pytest.raises(InvalidArgumentError, match=r"expected 'driver', 'gpu', 'node:<node id"):
        Placement.parse(bad)


def test_msgspec_typed_decoders_travel_by_pickle() -> None:
    # A @message class of a notebook travels by value, and its from_bytes may hold a msgspec
    # typed decoder (a C object pickle does not know): it is made again from its type.
    import pickle
    from typing import Annotated, Literal

    msgspec = pytest.importorskip("msgspec", reason="the typed decoders come with msgspec")
    from pydotcompute.cluster._wire import make_message_classes_picklable

    make_message_classes_picklable()
    t = tuple[Literal["t"], Annotated[int, msgspec.Meta(ge=0, le=255)]]
    decode = pickle.loads(pickle.dumps(msgspec.msgpack.Decoder(t).decode))
    assert decode(msgspec.msgpack.encode(["t", 7])) == ("t", 7)
    with pytest.raises(msgspec.ValidationError, match=r"Expected `int` <= 255"):
        decode(msgspec.msgpack.encode(["t", 300]))
