"""The shipped nginx site (``deploy/nginx/tidings.conf``) run for real, in a test's own nginx.

The site is rendered, not copied: the test's ports, gateways and certificate replace the
shipped ones, each substitution checked to have matched (a change to the shipped file that a
substitution no longer fits fails the test instead of testing something else). Around it, a
master configuration of the test's own (``daemon off``, a pid file, logs and temporary files in
a private directory), so nginx runs as the test's child on free ports and never touches
``/etc/nginx`` or ``/var``.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

NGINX = "/usr/sbin/nginx"
SITE = Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "tidings.conf"
CERTIFICATE_NAME = "localhost"


def render_site(
    *,
    https_port: int,
    http_port: int,
    gateways: Sequence[int],
    certificate: Path,
    key: Path,
    text: str | None = None,
) -> str:
    """The shipped site with only its addresses, upstream servers and certificate replaced."""
    site = SITE.read_text() if text is None else text
    upstream = "\n".join(
        f"    server 127.0.0.1:{port} max_fails=1 fail_timeout=5s;" for port in gateways
    )
    cert = certificate
    substitutions = [
        (r"^    listen 443 ssl;$", f"    listen 127.0.0.1:{https_port} ssl;"),
        (r"^    listen 80;$", f"    listen 127.0.0.1:{http_port};"),
        (r"^    server_name realtime\.example\.com;", f"    server_name {CERTIFICATE_NAME};"),
        (r"^    ssl_certificate /etc/tidings/tls/fullchain\.pem;", f"    ssl_certificate {cert};"),
        (
            r"^    ssl_certificate_key /etc/tidings/tls/privkey\.pem;",
            f"    ssl_certificate_key {key};",
        ),
        (r"(?:^    server 127\.0\.0\.1:\d+ max_fails=1 fail_timeout=5s;\n)+", upstream + "\n"),
    ]
    for pattern, replacement in substitutions:
        site, count = re.subn(pattern, replacement.replace("\\", "\\\\"), site, flags=re.MULTILINE)
        if not count:
            raise AssertionError(f"deploy/nginx/tidings.conf no longer has {pattern!r}")
    return site


def master_config(directory: Path, site: Path) -> str:
    """nginx.conf for a test: its own pid, logs and temporary files, the site included."""
    # As root, nginx's workers would switch to "nobody", who cannot read the test's private
    # directory; the test's nginx serves 127.0.0.1 only.
    user = "user root root;\n" if os.geteuid() == 0 else ""
    temp = "\n".join(
        f"    {kind}_temp_path {directory / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"{user}daemon off;\n"
        "worker_processes 1;\n"
        f"pid {directory / 'nginx.pid'};\n"
        f"error_log {directory / 'error.log'} info;\n"
        "events { worker_connections 1024; }\n"
        "http {\n"
        f"    access_log {directory / 'access.log'};\n"
        f"{temp}\n"
        f"    include {site};\n"
        "}\n"
    )


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for ``localhost`` and 127.0.0.1 and its key, by the openssl command."""
    certificate, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", f"/CN={CERTIFICATE_NAME}",
            "-addext", f"subjectAltName=DNS:{CERTIFICATE_NAME},IP:127.0.0.1",
            "-keyout", str(key), "-out", str(certificate),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return certificate, key


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class Nginx:
    """The shipped site in front of ``gateways`` (their ports), in nginx started by the test."""

    def __init__(
        self, directory: Path, gateways: Sequence[int], *, site_text: str | None = None
    ) -> None:
        """``site_text``: the site to render instead of the shipped one (a broken one)."""
        if not Path(NGINX).exists():
            raise RuntimeError(f"{NGINX} is missing: scripts/setup --test installs Debian's nginx")
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.certificate, self.key = self_signed(directory)
        self.https_port = free_port()
        self.http_port = free_port()
        site = directory / "tidings.conf"
        site.write_text(
            render_site(
                https_port=self.https_port,
                http_port=self.http_port,
                gateways=gateways,
                certificate=self.certificate,
                key=self.key,
                text=site_text,
            )
        )
        self.config = directory / "nginx.conf"
        self.config.write_text(master_config(directory, site))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://{CERTIFICATE_NAME}:{self.https_port}"

    def command(self, *args: str) -> list[str]:
        return [
            NGINX,
            "-p",
            str(self.directory),
            "-c",
            str(self.config),
            "-e",
            str(self.directory / "error.log"),
            *args,
        ]

    def test(self) -> subprocess.CompletedProcess[str]:
        """``nginx -t`` on this configuration."""
        return subprocess.run(self.command("-t"), capture_output=True, text=True, check=False)

    def start(self, timeout: float = 20) -> None:
        """Start nginx and wait until its TLS port takes connections."""
        self.process = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited {self.process.returncode}:\n{self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.https_port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    message = f"nginx not listening in {timeout}s:\n{self.log()}"
                    raise RuntimeError(message) from None
                time.sleep(0.05)

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM (nginx's fast shutdown), then SIGKILL if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log(self) -> str:
        path = self.directory / "error.log"
        return path.read_text(errors="replace") if path.exists() else "(no error log)"
