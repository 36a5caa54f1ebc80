"""herald_build - the package's own PEP 517 build backend, with no requirements

pip builds a project in an isolated environment and installs the backend's
requirements into it from the package index.  With no network (a machine
that reaches only Debian's mirror) that fails even though Debian ships
setuptools.  The herald package is pure Python, so this backend builds its
wheel itself, from the standard library alone: `requires = []` in
pyproject.toml, and `pip install ./bindings/python` works offline.
"""

import base64
import hashlib
import io
import os
import pathlib
import zipfile

NAME = "herald"
VERSION = "0.1.0"
SUMMARY = "The Herald event-sourcing agent for Python, over libherald"
LICENSE = "Apache-2.0"
ROOT = pathlib.Path(__file__).resolve().parent.parent
TAG = "py3-none-any"


def _metadata() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return (
        "Metadata-Version: 2.1\n"
        f"Name: {NAME}\n"
        f"Version: {VERSION}\n"
        f"Summary: {SUMMARY}\n"
        "Requires-Python: >=3.9\n"
        f"License: {LICENSE}\n"
        "Classifier: License :: OSI Approved :: Apache Software License\n"
        "Classifier: Programming Language :: Python :: 3\n"
        "Classifier: Framework :: AsyncIO\n"
        "Classifier: Typing :: Typed\n"
        "Provides-Extra: msgpack\n"
        "Requires-Dist: msgpack; extra == \"msgpack\"\n"
        "Description-Content-Type: text/markdown\n"
        "\n" + readme)


def _wheel_file() -> str:
    return ("Wheel-Version: 1.0\n"
            "Generator: herald_build\n"
            "Root-Is-Purelib: true\n"
            f"Tag: {TAG}\n")


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}\n"


def _license_text():
    """The licence: LICENSE beside pyproject.toml (an sdist's), else the
    Herald tree's, two levels up; None when neither is there."""
    for path in (ROOT / "LICENSE", ROOT.parent.parent / "LICENSE"):
        if path.is_file():
            return path.read_bytes()
    return None


def _package_files():
    package = ROOT / NAME
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            yield path.relative_to(ROOT).as_posix(), path.read_bytes()


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    """Write the wheel into wheel_directory and return its file name."""
    dist_info = f"{NAME}-{VERSION}.dist-info"
    wheel_name = f"{NAME}-{VERSION}-{TAG}.whl"
    files = list(_package_files())
    files.append((f"{dist_info}/METADATA", _metadata().encode("utf-8")))
    files.append((f"{dist_info}/WHEEL", _wheel_file().encode("utf-8")))
    files.append((f"{dist_info}/top_level.txt", f"{NAME}\n".encode("utf-8")))
    license_text = _license_text()
    if license_text is not None:
        files.append((f"{dist_info}/LICENSE", license_text))
    record = "".join(_record_line(name, data) for name, data in files)
    record += f"{dist_info}/RECORD,,\n"
    path = os.path.join(wheel_directory, wheel_name)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as wheel:
        for name, data in files:
            wheel.writestr(name, data)
        wheel.writestr(f"{dist_info}/RECORD", record)
    return wheel_name


def build_sdist(sdist_directory, config_settings=None):
    """A source archive of the package directory."""
    import tarfile
    base = f"{NAME}-{VERSION}"
    name = f"{base}.tar.gz"
    with tarfile.open(os.path.join(sdist_directory, name), "w:gz") as tar:
        for relative in ["pyproject.toml", "README.md"]:
            tar.add(ROOT / relative, arcname=f"{base}/{relative}")
        for relative, _ in _package_files():
            tar.add(ROOT / relative, arcname=f"{base}/{relative}")
        tar.add(ROOT / "_build" / "herald_build.py", arcname=f"{base}/_build/herald_build.py")
        license_text = _license_text()
        if license_text is not None:
            entry = tarfile.TarInfo(f"{base}/LICENSE")
            entry.size = len(license_text)
            tar.addfile(entry, io.BytesIO(license_text))
        info = (f"Metadata-Version: 2.1\nName: {NAME}\nVersion: {VERSION}\n"
                f"Summary: {SUMMARY}\nLicense: {LICENSE}\n").encode("utf-8")
        entry = tarfile.TarInfo(f"{base}/PKG-INFO")
        entry.size = len(info)
        tar.addfile(entry, io.BytesIO(info))
    return name
