"""The ctypes structures of herald._lib against include/herald.h.

tests/abi_layout (built by make check) prints every public struct's size
and every field's offset as the C compiler lays them out; each must match
the binding's ctypes structure, field for field, so that a field added to
the header and not to the binding (or in another place) fails here rather
than corrupting memory at run time.
"""

import os
import pathlib
import re
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


# Every struct of the public headers is checked, and every field of it:
# tests/abi_layout.c lists them by hand, so a struct added to herald.h (or a
# field whose addition the padding hides from the size) without a line there
# would escape the test above.  The header is read here, not trusted to the
# list.  herald_projection.h counts once the binding lays out its structs.
SRCDIR = pathlib.Path(os.environ.get("HERALD_SRCDIR",
                                     pathlib.Path(__file__).resolve().parents[3]))
PACKAGE = pathlib.Path(_lib.__file__).resolve().parent


def _public_headers():
    headers = [SRCDIR / "include" / "herald.h"]
    projection = SRCDIR / "include" / "herald_projection.h"
    # the C projection library's structs count once the binding calls it
    # (a prototype in _lib.py), not when a comment names one of its files
    binding = (PACKAGE / "_lib.py").read_text()
    if projection.exists() and re.search(r'"herald_projection_\w+"', binding):
        headers.append(projection)
    return headers


def _field_name(declaration):
    """The member a declaration names: `char node [128]` -> node,
    `void (*on_error) (...)` -> on_error, `const char *const *p` -> p."""
    pointer = re.search(r"\(\s*\*\s*(\w+)\s*\)", declaration)
    if pointer:
        return pointer.group(1)
    declaration = re.sub(r"\[[^]]*\]", "", declaration)
    return re.findall(r"\w+", declaration)[-1]


def _header_structs(path):
    """{C type name: [field, ...]} of every `typedef struct { ... } name;`."""
    text = re.sub(r"/\*.*?\*/", "", path.read_text(), flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    structs = {}
    for body, name in re.findall(r"typedef\s+struct\s*\{(.*?)\}\s*(\w+)\s*;", text, re.S):
        structs[name] = [_field_name(d) for d in body.split(";") if d.strip()]
    return structs


def _probe_names():
    """{C type name: binding name} from abi_layout.c's S_SIZE lines."""
    source = (SRCDIR / "tests" / "abi_layout.c").read_text()
    return dict(re.findall(r'S_SIZE \((\w+), "(\w+)"\)', source))


def test_header_parser_reads_every_kind_of_member(tmp_path):
    header = tmp_path / "h.h"
    header.write_text("typedef struct {\n  const char *const *prefixes;  // a; b\n"
                      "  char node [128];\n  void (*on_error) (const char *s, void *arg);\n"
                      "  /* x; y */ uint64_t last;\n} herald_x_t;\n")
    assert _header_structs(header) == {"herald_x_t": ["prefixes", "node", "on_error", "last"]}


def test_every_public_struct_and_field_is_checked():
    sizes, offsets = _layout()
    names = _probe_names()
    checked = set(test_ctypes_structure_matches_the_c_header.pytestmark[0].args[1])
    for header in _public_headers():
        structs = _header_structs(header)
        assert structs, header
        for ctype, fields in structs.items():
            assert ctype in names, "%s (%s) is not in tests/abi_layout.c" % (ctype, header.name)
            name = names[ctype]
            assert name in checked, "%s is not checked against the binding" % name
            # a field named as a Python keyword has a trailing _ (Range.from_)
            printed = [field.rstrip("_") for field in offsets[name]]
            assert printed == fields, \
                "tests/abi_layout.c prints %s's fields %s, %s has %s" \
                % (ctype, list(offsets[name]), header.name, fields)


def test_every_herald_err_of_the_header_is_in_the_binding():
    """Each HERALD_ERR_X = N of include/herald.h is _lib.ERR_X == N, and each
    has its own exception class: a code added to the header (trimmed, 10)
    without the binding would reach Python as a bare HeraldError."""
    from herald import errors
    header = (SRCDIR / "include" / "herald.h").read_text()
    codes = {name: int(value) for name, value in
             re.findall(r"\bHERALD_ERR_([A-Z_]+)\s*=\s*(\d+)", header)}
    assert codes["TRIMMED"] == 10
    for name, value in codes.items():
        assert getattr(_lib, "ERR_" + name, None) == value, name
        assert errors.error_class(value).code == value, name
    binding = {name[4:]: value for name, value in vars(_lib).items()
               if name.startswith("ERR_")}
    assert binding == codes
