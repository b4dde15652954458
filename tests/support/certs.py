"""Throwaway certificate authorities and certificates for TLS tests, made with the openssl command."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

# Short-lived on purpose: these files only ever serve one test session.
_DAYS = "2"
_CURVE = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def openssl_unavailable_reason() -> str | None:
    """Why certificates cannot be made here, or None."""
    return None if shutil.which("openssl") else "the openssl command is not installed"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key (PEM files)."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Authority:
    """A self-signed CA that issues server and client certificates into its folder."""

    folder: Path
    cert: Path
    key: Path

    @classmethod
    def create(cls, folder: Path, name: str) -> Authority:
        folder.mkdir(parents=True, exist_ok=True)
        cert, key = folder / f"{name}.pem", folder / f"{name}.key"
        _openssl(
            "req", "-x509", *_CURVE, "-keyout", str(key), "-out", str(cert), "-days", _DAYS,
            "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            cwd=folder,
        )  # fmt: skip
        return cls(folder, cert, key)

    def issue(self, name: str, *, server: bool) -> Issued:
        """A leaf certificate: for 127.0.0.1/localhost/::1 when `server`, else for a client."""
        cert, key, csr = (self.folder / f"{name}.{ext}" for ext in ("pem", "key", "csr"))
        extensions = self.folder / f"{name}.ext"
        usage = (
            "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n"
            if server
            else "extendedKeyUsage=clientAuth\n"
        )
        extensions.write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n" + usage)
        _openssl("req", *_CURVE, "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}", cwd=self.folder)
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(self.cert), "-CAkey", str(self.key),
            "-CAcreateserial", "-out", str(cert), "-days", _DAYS, "-extfile", str(extensions),
            cwd=self.folder,
        )  # fmt: skip
        return Issued(cert, key)
