"""The secure stack's secrets, generated once into a private directory under the stack's home.

``$LISA_CHOREO_HOME/secure`` (mode 0700) holds, every file mode 0600:

- ``ca.pem`` / ``ca.key``: a CA made for this stack alone (EC P-256, 10 years); clients trust it
  through ``LISA_KAFKA_SSL_CAFILE`` and nothing else is signed by it but the broker's certificate;
- ``broker.pem``: the broker's key (PKCS#8, unencrypted) and its certificate chain in one file,
  as Kafka reads ``ssl.keystore.type=PEM``; the certificate names ``127.0.0.1`` and ``localhost``
  (the stack listens on loopback only), for 825 days, reissued when fewer than 30 are left;
- ``<principal>.password``: one password per principal, 32 random bytes from ``secrets``
  (``token_urlsafe``); the broker's SCRAM-SHA-512 users are made from them when its storage is
  formatted (``lisa_choreo.localstack.brokers``).

Nothing here prints or logs a password; commands show the files' paths. ``redact`` removes the
passwords from a text (a failing tool's output) before it is shown.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import secrets
from collections.abc import Iterable
from pathlib import Path

from choreo.settings import KafkaSettings, home

ADMIN = "admin"  # the broker's super user (``super.users``): formats, creates topics and ACLs
SASL_MECHANISM = "SCRAM-SHA-512"
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")  # safe in file names, SCRAM arguments and JAAS
_CA_DAYS = 3650
_BROKER_DAYS = 825
_RENEW_DAYS = 30


def secure_dir(root: Path | None = None) -> Path:
    return (root or home()) / "secure"


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"invalid principal name {name!r} (lowercase letters, digits, '-')")
    return name


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600 from the first byte (never world-readable, not
    even for a moment), then rename into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class SecureFiles:
    """The paths in the private directory, and the passwords read from it."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    @property
    def broker_keystore(self) -> Path:
        return self.root / "broker.pem"

    def password_file(self, principal: str) -> Path:
        return self.root / f"{_check_name(principal)}.password"

    def password(self, principal: str) -> str:
        return self.password_file(principal).read_text().strip()

    def principals(self) -> list[str]:
        return sorted(p.name.removesuffix(".password") for p in self.root.glob("*.password"))

    def exists(self) -> bool:
        return self.ca_cert.exists() and self.password_file(ADMIN).exists()

    def passwords(self) -> list[str]:
        """Every password (to redact a text or to check that a log holds none)."""
        return [self.password(p) for p in self.principals()]

    def redact(self, text: str) -> str:
        for secret in self.passwords():
            text = text.replace(secret, "***")
        return text

    def client_settings(
        self, principal: str, bootstrap: str, topic_prefix: str = ""
    ) -> KafkaSettings:
        """How ``principal`` reaches the secure broker (SASL_SSL, SCRAM-SHA-512, this CA)."""
        return KafkaSettings(
            bootstrap_servers=bootstrap,
            security_protocol="SASL_SSL",
            sasl_mechanism=SASL_MECHANISM,
            sasl_username=principal,
            sasl_password=None,
            sasl_password_file=self.password_file(principal),
            ssl_cafile=str(self.ca_cert),
            topic_prefix=topic_prefix,
        )

    def client_env(self, principal: str, bootstrap: str, topic_prefix: str = "") -> dict[str, str]:
        """The ``LISA_KAFKA_*`` environment of a process running as ``principal``: the password
        as a file reference, never its value."""
        env = {
            "LISA_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "LISA_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "LISA_KAFKA_SASL_MECHANISM": SASL_MECHANISM,
            "LISA_KAFKA_SASL_USERNAME": principal,
            "LISA_KAFKA_SASL_PASSWORD_FILE": str(self.password_file(principal)),
            "LISA_KAFKA_SSL_CAFILE": str(self.ca_cert),
        }
        if topic_prefix:
            env["LISA_KAFKA_TOPIC_PREFIX"] = topic_prefix
        return env


def ensure(principals: Iterable[str], root: Path | None = None) -> SecureFiles:
    """Create what is missing (the directory, the CA, the broker's certificate, a password per
    principal, the admin's included); keep what exists. Returns the files."""
    files = SecureFiles(secure_dir(root))
    files.root.mkdir(parents=True, exist_ok=True)
    os.chmod(files.root, 0o700)
    if not (files.ca_cert.exists() and files.ca_key.exists()):
        key_pem, cert_pem = _new_ca()
        _write_private(files.ca_key, key_pem)
        _write_private(files.ca_cert, cert_pem)
        files.broker_keystore.unlink(missing_ok=True)  # signed by the old CA
    if _needs_broker_cert(files):
        _write_private(files.broker_keystore, _new_broker_keystore(files))
    for name in {ADMIN, *principals}:
        path = files.password_file(name)
        if not path.exists():
            _write_private(path, secrets.token_urlsafe(32).encode())
    for path in files.root.iterdir():  # files made by an older version or by hand
        if path.is_file():
            os.chmod(path, 0o600)
    return files


# -- X.509 with the `cryptography` library ----------------------------------------------------


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _new_ca() -> tuple[bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "lisa-choreo local stack"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"lisa-choreo CA {secrets.token_hex(4)}"),
        ]
    )
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=_CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def _needs_broker_cert(files: SecureFiles) -> bool:
    from cryptography import x509

    if not files.broker_keystore.exists():
        return True
    cert = x509.load_pem_x509_certificates(files.broker_keystore.read_bytes())[0]
    return cert.not_valid_after_utc - _now() < dt.timedelta(days=_RENEW_DAYS)


def _new_broker_keystore(files: SecureFiles) -> bytes:
    """The broker's key and certificate chain (leaf, CA) in one PEM file."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=_BROKER_DAYS))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.DNSName("localhost"),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            # clientAuth too: the broker is its own client on the inter-broker listener
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    chain = cert.public_bytes(serialization.Encoding.PEM) + files.ca_cert.read_bytes()
    return key_pem + chain
