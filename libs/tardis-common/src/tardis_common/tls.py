"""TLS for the Tardis listeners: self-signed server certificates and trust on first use.

A server without a certificate from a CA makes its own on first start (EC P-256, ten
years). Clients either verify against a CA file, or fetch the certificate, pin its
fingerprint in a known-servers file (like ssh's known_hosts) and then trust exactly that
certificate; a changed certificate is refused with a one-line explanation.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import logging
import os
import socket
import ssl
import tempfile
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from . import errors
from .rpc import ClientTLS, ServerTLS

log = logging.getLogger(__name__)

KNOWN_SERVERS_ENV = "TARDIS_KNOWN_SERVERS"
DEFAULT_KNOWN_SERVERS = "~/.config/tardis/known_servers"
CERT_DAYS = 3650


# --- addresses ------------------------------------------------------------------------------


def split_address(address: str) -> tuple[str, int]:
    """("host", port) of "host:port" or "[v6]:port"; InvalidArgument otherwise."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise errors.InvalidArgument(f"address {address} is not host:port")
    return host.strip("[]"), int(port)


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def is_loopback(address: str) -> bool:
    """True for a Unix socket or a TCP address on the loopback interface (by name or IP)."""
    if address.startswith("unix:"):
        return True
    host = address.rpartition(":")[0].strip("[]") if ":" in address else address
    if host.lower() == "localhost":
        return True
    ip = _ip(host)
    return ip is not None and ip.is_loopback


def host_names(listen_address: str) -> list[str]:
    """Names a server listening on ``listen_address`` should have in its certificate."""
    host = listen_address.rpartition(":")[0].strip("[]")
    ip = _ip(host)
    names = [] if not host or (ip is not None and ip.is_unspecified) else [host]
    for name in (socket.gethostname(), socket.getfqdn()):
        if name and name not in names:
            names.append(name)
    return names


# --- certificates ---------------------------------------------------------------------------


def fingerprint(cert_pem: bytes) -> str:
    """ "SHA256:" and the lowercase hex SHA-256 of the certificate's DER form."""
    der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    return "SHA256:" + hashlib.sha256(der).hexdigest()


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def make_self_signed(hostnames: Sequence[str]) -> tuple[bytes, bytes]:
    """A new self-signed EC P-256 certificate for ``hostnames`` and "localhost"; (cert, key) PEM."""
    names = list(dict.fromkeys([*hostnames, "localhost"]))
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    sans: list[x509.GeneralName] = []
    for name in names:
        ip = _ip(name)
        sans.append(x509.IPAddress(ip) if ip is not None else x509.DNSName(name))
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH, x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise errors.ConfigError(f"cannot read TLS {what} {path}: {exc.strerror or exc}") from None


def ensure_server_certificate(cert_path: str, key_path: str, hostnames: Sequence[str]) -> tuple[bytes, bytes, bool]:
    """The certificate and key at the paths, created (self-signed) when both are missing.

    Returns (cert_pem, key_pem, created). ConfigError when only one of them exists or
    either cannot be read or parsed.
    """
    cert_file, key_file = Path(cert_path).expanduser(), Path(key_path).expanduser()
    if not cert_file.exists() and not key_file.exists():
        cert_pem, key_pem = make_self_signed(hostnames)
        try:
            _write_atomic(key_file, key_pem, 0o600)
            _write_atomic(cert_file, cert_pem, 0o644)
        except OSError as exc:
            raise errors.ConfigError(f"cannot create TLS certificate {cert_file}: {exc.strerror or exc}") from None
        return cert_pem, key_pem, True
    for path, other in ((cert_file, key_file), (key_file, cert_file)):
        if not path.exists():
            raise errors.ConfigError(f"TLS file {path} is missing but {other} exists; give both or neither")
    cert_pem, key_pem = _read(cert_file, "certificate"), _read(key_file, "key")
    try:
        x509.load_pem_x509_certificate(cert_pem)
        serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise errors.ConfigError(f"TLS certificate {cert_file} or key {key_file} is not valid PEM: {exc}") from None
    return cert_pem, key_pem, False


def dns_names(cert_pem: bytes) -> list[str]:
    """The DNS names of a certificate's subject alternative names."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return list(san.get_values_for_type(x509.DNSName))


def fetch_server_certificate(host: str, port: int, timeout: float) -> bytes:
    """The certificate a TLS server at host:port offers (PEM), without verifying it."""
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])  # gRPC servers refuse a handshake without it
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=None if _ip(host) else host) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except ssl.SSLError as exc:
        reason = exc.reason or str(exc)
        raise errors.Unavailable(
            f"cannot connect to {address}: TLS handshake failed ({reason}); does it use TLS?"
        ) from None
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise errors.Unavailable(f"cannot reach server at {address}: {reason}") from None
    if not der:
        raise errors.Unavailable(f"cannot connect to {address}: the server offered no TLS certificate")
    return ssl.DER_cert_to_PEM_cert(der).encode()


# --- pinning --------------------------------------------------------------------------------


class PinStore:
    """Fingerprints of servers seen before: one "host:port fingerprint" line each."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        named = path if path is not None else os.environ.get(KNOWN_SERVERS_ENV) or DEFAULT_KNOWN_SERVERS
        self.path = Path(named).expanduser()

    def _read(self) -> dict[str, str]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise errors.ConfigError(f"cannot read known servers file {self.path}: {exc.strerror or exc}") from None
        pins: dict[str, str] = {}
        for line in text.splitlines():
            fields = line.split()
            if len(fields) >= 2 and not fields[0].startswith("#"):
                pins.setdefault(fields[0], fields[1])
        return pins

    def pinned(self, address: str) -> str | None:
        return self._read().get(address)

    def check(self, address: str, cert_pem: bytes) -> bool:
        """True when ``address`` was unknown and is now pinned to this certificate, False when
        it matches its pin; PermissionDenied when the server offers another certificate."""
        offered = fingerprint(cert_pem)
        old = self.pinned(address)
        if old == offered:
            return False
        if old is not None:
            raise errors.PermissionDenied(
                f"the TLS certificate of {address} has changed (pinned {old}, offered {offered}); "
                f"if this is expected, delete its line from {self.path}"
            )
        try:
            existing = self.path.read_bytes() if self.path.exists() else b""
            if existing and not existing.endswith(b"\n"):
                existing += b"\n"
            _write_atomic(self.path, existing + f"{address} {offered}\n".encode(), 0o600)
        except OSError as exc:
            raise errors.ConfigError(f"cannot write known servers file {self.path}: {exc.strerror or exc}") from None
        return True


def client_tls_for(host: str, port: int, *, ca_file: str | None, pins: PinStore | None, timeout: float) -> ClientTLS:
    """How to reach a TLS server: verified against ``ca_file``, else pinned on first use."""
    if ca_file:
        return ClientTLS(root_pem=_read(Path(ca_file).expanduser(), "CA file"))
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    cert_pem = fetch_server_certificate(host, port, timeout)
    if (pins or PinStore()).check(address, cert_pem):
        log.warning("pinned certificate of %s: %s", address, fingerprint(cert_pem))
    names = dns_names(cert_pem)
    if not names:
        raise errors.PermissionDenied(f"the TLS certificate of {address} names no host; give a CA file instead")
    return ClientTLS(root_pem=cert_pem, server_name=host if host in names else names[0])


def listener_tls(
    listen: str,
    *,
    cert_file: str | None = None,
    key_file: str | None = None,
    tls_dir: str | os.PathLike[str] | None = None,
    client_ca_file: str | None = None,
) -> tuple[ServerTLS | None, str | None]:
    """TLS for a server listening on ``listen``, and a line to show its operator.

    From ``cert_file``/``key_file`` when given (created self-signed when both are missing),
    else from server.crt/server.key in ``tls_dir`` when given (likewise), else None (plain).
    ``client_ca_file`` asks for mutual TLS. The line names the certificate's fingerprint.
    """
    if (cert_file is None) != (key_file is None):
        raise errors.ConfigError("give both --tls-cert and --tls-key, or neither")
    if cert_file is None and tls_dir is not None:
        cert_file, key_file = str(Path(tls_dir, "server.crt")), str(Path(tls_dir, "server.key"))
    if cert_file is None or key_file is None:
        if client_ca_file:
            raise errors.ConfigError("a TLS client CA needs a server certificate: give --tls-cert and --tls-key")
        return None, None
    cert_pem, key_pem, created = ensure_server_certificate(cert_file, key_file, host_names(listen))
    client_ca = _read(Path(client_ca_file).expanduser(), "client CA file") if client_ca_file else None
    how = "created a self-signed TLS certificate" if created else "TLS certificate"
    line = f"{how} {cert_file}, fingerprint {fingerprint(cert_pem)}"
    return ServerTLS(cert_pem=cert_pem, key_pem=key_pem, client_ca_pem=client_ca), line
