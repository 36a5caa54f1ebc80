"""The ctypes structures of herald._lib against include/herald.h.

tests/abi_layout (built by make check) prints every public struct's size
and every field's offset as the C compiler lays them out; each must match
the binding's ctypes structure, field for field, so that a field added to
the header and not to the binding (or in another place) fails here rather
than corrupting memory at run time.
"""

import os
import pathlib
import subprocess

import pytest

from herald import _lib

BUILDDIR = pathlib.Path(os.environ.get("HERALD_BUILDDIR",
                                       pathlib.Path(__file__).resolve().parents[3]))
PROBE = BUILDDIR / "tests" / "abi_layout"


def _layout():
    if not PROBE.exists():
        pytest.skip("%s is not built (make check builds it)" % PROBE)
    out = subprocess.run([str(PROBE)], check=True, capture_output=True, text=True).stdout
    sizes, offsets = {}, {}
    for line in out.splitlines():
        words = line.split()
        if words[1] == "size" and len(words) == 3:     # not a field named size
            sizes[words[0]] = int(words[2])
        else:
            offsets.setdefault(words[0], {})[words[1]] = int(words[3])
    return sizes, offsets


@pytest.mark.parametrize("name", ["Meta", "Options", "Start", "Delivery", "DeliveryBatch",
                                  "SubStatus",
                                  "GroupOptions", "GroupStatus",
                                  "Outgoing", "PublishResult", "Range", "Stats",
                                  "CastResult", "SchemaWant", "SubscribeOptions",
                                  "SchemaStats"])
def test_ctypes_structure_matches_the_c_header(name):
    sizes, offsets = _layout()
    structure = getattr(_lib, name)
    fields = [field[0] for field in structure._fields_]
    assert fields == list(offsets[name]), "fields differ from herald.h's, in name or order"
    for field in fields:
        assert getattr(structure, field).offset == offsets[name][field], field
    assert _lib.ctypes.sizeof(structure) == sizes[name]
