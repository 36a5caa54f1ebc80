"""test_license - the package says its licence where pip and users look

Herald is Apache-2.0 (LICENSE at the top of the tree).  The wheel that
`pip install ./bindings/python` builds (the package's own backend,
_build/herald_build.py) must carry it in its METADATA (`License:` and the
trove classifier, what `pip show herald` prints) and ship the licence text
in its .dist-info; pyproject.toml must say the same, in the PEP 621 table
form that Debian 12's setuptools (66) and pip (23) read; and herald.pc,
which pkg-config users see, names it in its Description.  The backend is
called directly, as pip calls it: no index, no network.
"""

import email.parser
import importlib.util
import tomllib
import zipfile

from conftest import BUILDDIR, PACKAGE_ROOT, SOURCE_ROOT

LICENSE = "Apache-2.0"
CLASSIFIER = "License :: OSI Approved :: Apache Software License"


def _backend():
    spec = importlib.util.spec_from_file_location(
        "herald_build", PACKAGE_ROOT / "_build" / "herald_build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _wheel(tmp_path):
    name = _backend().build_wheel(str(tmp_path))
    return zipfile.ZipFile(tmp_path / name)


def test_the_tree_holds_the_apache_license():
    text = (SOURCE_ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text


def test_the_wheel_metadata_names_the_license(tmp_path):
    with _wheel(tmp_path) as wheel:
        infos = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
        assert len(infos) == 1, wheel.namelist()
        metadata = email.parser.Parser().parsestr(wheel.read(infos[0]).decode("utf-8"))
    assert metadata["License"] == LICENSE
    assert CLASSIFIER in metadata.get_all("Classifier")


def test_the_wheel_ships_the_license_text(tmp_path):
    with _wheel(tmp_path) as wheel:
        texts = [n for n in wheel.namelist() if n.endswith(".dist-info/LICENSE")]
        assert len(texts) == 1, wheel.namelist()
        shipped = wheel.read(texts[0])
        record = wheel.read(texts[0].replace("LICENSE", "RECORD")).decode("utf-8")
    assert shipped == (SOURCE_ROOT / "LICENSE").read_bytes()
    assert texts[0] + ",sha256=" in record


def test_pyproject_says_the_same_as_the_wheel(tmp_path):
    project = tomllib.loads((PACKAGE_ROOT / "pyproject.toml").read_text())["project"]
    #  The PEP 621 table form: setuptools 66 refuses a bare string here.
    assert project["license"] == {"text": LICENSE}
    with _wheel(tmp_path) as wheel:
        info = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")][0]
        metadata = email.parser.Parser().parsestr(wheel.read(info).decode("utf-8"))
    assert project["version"] == metadata["Version"]
    assert project["description"] == metadata["Summary"]
    assert sorted(project["classifiers"]) == sorted(metadata.get_all("Classifier"))


def test_herald_pc_names_the_license():
    pc = (BUILDDIR / "herald.pc").read_text()
    description = [line for line in pc.splitlines() if line.startswith("Description:")]
    assert len(description) == 1
    assert LICENSE in description[0]
