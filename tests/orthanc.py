"""A real PACS for the tests: Debian's Orthanc with its DICOMweb plugin, on loopback,
with its own storage folder, port and user.

Orthanc's Lua HTTP filter refuses STOW-RS requests (403) while ``refuse_stores`` is
set, so a test can make the PACS refuse stores and then accept them again. (A
``ReceivedInstanceFilter`` would not do: Orthanc's DICOMweb plugin 1.7 answers a
filtered-out STOW as stored.)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from base64 import b64encode
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from ray_nodes import free_port

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
DCIODVFY = shutil.which("dciodvfy") or "/usr/bin/dciodvfy"  # dicom3tools, installed beside it
USER, PASSWORD = "tumorseg", "pacs-secret"
REQUIRE = os.environ.get("TUMORSEG_REQUIRE_ORTHANC") == "1"  # CI: a missing Orthanc fails

_FILTER = """
function IncomingHttpRequestFilter(method, uri, ip, username, httpHeaders)
  if method == 'POST' and string.find(uri, '/dicom-web/studies', 1, true) == 1 then
    local flag = io.open('{flag}', 'r')
    if flag ~= nil then
      flag:close()
      return false
    end
  end
  return true
end
"""


@dataclass
class Orthanc:
    root: Path
    port: int
    process: subprocess.Popen

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    @property
    def _flag(self) -> Path:
        return self.root / "refuse-stores"

    def refuse_stores(self, refuse: bool) -> None:
        if refuse:
            self._flag.touch()
        else:
            self._flag.unlink(missing_ok=True)

    def rest(self, path: str, method: str = "GET", body: bytes | None = None):
        token = b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=body,
            method=method,
            headers={"Authorization": f"Basic {token}"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            data = response.read()
        return json.loads(data) if data else None

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_orthanc(root: Path) -> Orthanc:
    if not all(Path(p).exists() for p in (ORTHANC, DICOMWEB_PLUGIN, DCIODVFY)):
        message = "Orthanc, its DICOMweb plugin or dicom3tools are not installed (apt)"
        if REQUIRE:
            pytest.fail(message)
        pytest.skip(message)
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    (root / "filter.lua").write_text(_FILTER.format(flag=root / "refuse-stores"))
    config = {
        "Name": "tumorseg-test",
        "StorageDirectory": str(root / "storage"),
        "IndexDirectory": str(root / "storage"),
        "HttpPort": port,
        "DicomServerEnabled": False,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {USER: PASSWORD},
        "Plugins": [str(DICOMWEB_PLUGIN)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "LuaScripts": [str(root / "filter.lua")],
        "HttpThreadsCount": 8,
    }
    (root / "orthanc.json").write_text(json.dumps(config))
    log = (root / "orthanc.log").open("w")
    process = subprocess.Popen([ORTHANC, str(root / "orthanc.json")], stdout=log, stderr=log)
    server = Orthanc(root, port, process)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Orthanc exited: {(root / 'orthanc.log').read_text()[-2000:]}")
        try:
            server.rest("/system")
            return server
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)
    server.stop()
    raise TimeoutError("Orthanc did not answer in 30 s")


def dciodvfy_errors(dataset: pydicom.Dataset, path: Path) -> list[str]:
    """What dicom3tools' validator calls an error in ``dataset`` (warnings aside)."""
    if not Path(DCIODVFY).exists():
        if REQUIRE:
            pytest.fail("dicom3tools (dciodvfy) is not installed (apt)")
        pytest.skip("dicom3tools (dciodvfy) is not installed (apt)")
    dataset.save_as(path, enforce_file_format=True)
    checked = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, check=False)
    lines = (checked.stdout + checked.stderr).splitlines()
    return [line for line in lines if line.startswith("Error")]
