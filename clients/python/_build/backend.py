"""A PEP 517 build backend for the batchd client, standard library only.

Why not setuptools: pip builds a package in an isolated environment into
which it installs the backend from a package index; on a machine without
one (this project's CI, air-gapped hosts) `pip install ./clients/python`
would fail. This backend needs nothing: it packs batchd/*.py into a wheel
(PEP 427: the files, a .dist-info with METADATA, WHEEL and a RECORD of
sha256 hashes) or an sdist (PEP 517: a .tar.gz of the source with
PKG-INFO). build_editable (PEP 660) puts a .pth file naming this folder.

The metadata comes from pyproject.toml's [project] table (tomllib where
Python has it, 3.11+; else the few keys are read with a regular
expression, which is enough for this file's simple shape).
"""

import base64
import hashlib
import io
import os
import re
import tarfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "batchd"


def _project():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        raw = f.read()
    try:
        import tomllib
        return tomllib.loads(raw.decode())["project"]
    except ImportError:
        text = raw.decode()
        section = text.split("[project]", 1)[1].split("\n[", 1)[0]
        proj = {}
        for key in ("name", "version", "description", "readme", "requires-python"):
            m = re.search(r'^%s\s*=\s*"([^"]*)"' % re.escape(key), section, re.M)
            if m:
                proj[key] = m.group(1)
        return proj


def _metadata():
    p = _project()
    lines = ["Metadata-Version: 2.1", "Name: " + p["name"], "Version: " + p["version"],
             "Summary: " + p.get("description", ""),
             "Requires-Python: " + p.get("requires-python", ">=3.9"),
             "Provides-Extra: numpy", 'Requires-Dist: numpy; extra == "numpy"']
    body = ""
    readme = p.get("readme")
    if readme and os.path.exists(os.path.join(ROOT, readme)):
        lines.append("Description-Content-Type: text/markdown")
        with open(os.path.join(ROOT, readme), encoding="utf-8") as f:
            body = "\n" + f.read()
    return p["name"], p["version"], "\n".join(lines) + "\n" + body


def _sources():
    """(archive name, path) of every file of the package, sorted."""
    out = []
    for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, PACKAGE)):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for fn in sorted(filenames):
            if fn.endswith(".py"):
                path = os.path.join(dirpath, fn)
                out.append((os.path.relpath(path, ROOT).replace(os.sep, "/"), path))
    return out


def _record_line(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return "%s,sha256=%s,%d" % (name, digest, len(data))


def _write_wheel(wheel_directory, files):
    name, version, metadata = _metadata()
    dist_info = "%s-%s.dist-info" % (name, version)
    wheel_name = "%s-%s-py3-none-any.whl" % (name, version)
    wheel_meta = ("Wheel-Version: 1.0\nGenerator: batchd-backend\nRoot-Is-Purelib: true\n"
                  "Tag: py3-none-any\n")
    entries = list(files) + [(dist_info + "/METADATA", metadata.encode()),
                             (dist_info + "/WHEEL", wheel_meta.encode())]
    record = [_record_line(n, d) for n, d in entries] + [dist_info + "/RECORD,,"]
    entries.append((dist_info + "/RECORD", ("\n".join(record) + "\n").encode()))
    with zipfile.ZipFile(os.path.join(wheel_directory, wheel_name), "w",
                         zipfile.ZIP_DEFLATED) as z:
        for n, d in entries:
            z.writestr(zipfile.ZipInfo(n, date_time=(2020, 1, 1, 0, 0, 0)), d)
    return wheel_name


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def get_requires_for_build_editable(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    files = []
    for arc, path in _sources():
        with open(path, "rb") as f:
            files.append((arc, f.read()))
    return _write_wheel(wheel_directory, files)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    return _write_wheel(wheel_directory, [(PACKAGE + "-editable.pth", (ROOT + "\n").encode())])


def build_sdist(sdist_directory, config_settings=None):
    name, version, metadata = _metadata()
    base = "%s-%s" % (name, version)
    fn = base + ".tar.gz"
    with tarfile.open(os.path.join(sdist_directory, fn), "w:gz") as tar:
        extra = ["pyproject.toml", "README.md", "_build/backend.py"]
        for arc in extra + [a for a, _ in _sources()]:
            tar.add(os.path.join(ROOT, arc), arcname=base + "/" + arc)
        info = tarfile.TarInfo(base + "/PKG-INFO")
        data = metadata.encode()
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return fn
