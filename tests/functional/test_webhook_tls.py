"""A webhook whose TLS certificate fails verification (expired, for another host, from an
authority nobody trusts) is retried like any failure, since its operator may fix it within the
day the retries last, and the failure says what it is: what failed verification and why, not
that the webhook was unreachable. Against a loopback TLS receiver holding a self-signed
certificate made here."""
from __future__ import annotations

import datetime
import ssl
from typing import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from chalicelib.adapters.webhook import HttpWebhookSender
from chalicelib.domain.errors import WebhookDeliveryError, WebhookRefusedError
from tests.support.counting_receiver import CountingReceiver


def self_signed(name: str, *, expired: bool = False) -> tuple[bytes, bytes]:
    """(certificate, key) PEM of a self-signed certificate for the IP address or DNS `name`,
    valid for a day, or ended a day ago."""
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    try:
        san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        san = x509.DNSName(name)
    now = datetime.datetime.now(datetime.timezone.utc)
    starts = now - datetime.timedelta(days=2 if expired else 1)
    certificate = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(starts).not_valid_after(starts + datetime.timedelta(days=1 if expired else 2))
                   .add_extension(x509.SubjectAlternativeName([san]), critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(key, hashes.SHA256()))
    return (certificate.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def tls_receiver(certificate: bytes, key: bytes, tmp_path) -> CountingReceiver:
    (tmp_path / "cert.pem").write_bytes(certificate)
    (tmp_path / "key.pem").write_bytes(key)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    return CountingReceiver(tls=server_tls)


def trusting(certificate: bytes) -> ssl.SSLContext:
    client_tls = ssl.create_default_context()
    client_tls.load_verify_locations(cadata=certificate.decode())
    return client_tls


@pytest.fixture
def receivers() -> Iterator[list[CountingReceiver]]:
    started: list[CountingReceiver] = []
    yield started
    for receiver in started:
        receiver.stop()


@pytest.mark.parametrize("case, why", [
    ("expired", "certificate has expired"),
    ("another host", "IP address mismatch, certificate is not valid for '127.0.0.1'"),
    ("unknown authority", "self-signed certificate"),
])
def test_a_certificate_that_fails_verification_is_a_failure_that_says_so(case, why, receivers, tmp_path):
    certificate, key = self_signed("erp.example" if case == "another host" else "127.0.0.1",
                                   expired=case == "expired")
    receiver = tls_receiver(certificate, key, tmp_path)
    receivers.append(receiver)
    sender = HttpWebhookSender(tls=ssl.create_default_context() if case == "unknown authority" else trusting(certificate))
    with pytest.raises(WebhookDeliveryError) as failure:
        sender.post(f"{receiver.base}/ok", b"{}", {})
    port = receiver.base.rsplit(":", 1)[1]
    assert failure.value.message.startswith(
        f"the TLS certificate of webhook 127.0.0.1:{port} failed verification: {why}")
    assert "unreachable" not in failure.value.message
    assert not isinstance(failure.value, WebhookRefusedError)  # retried, not parked
    assert receiver.answered == []


def test_a_valid_self_signed_certificate_trusted_as_such_is_delivered_to(receivers, tmp_path):
    certificate, key = self_signed("127.0.0.1")
    receiver = tls_receiver(certificate, key, tmp_path)
    receivers.append(receiver)
    assert HttpWebhookSender(tls=trusting(certificate)).post(f"{receiver.base}/ok", b"{}", {}).status == 202


def test_a_webhook_that_speaks_no_tls_on_an_https_url_says_so(receivers):
    receiver = CountingReceiver()
    receivers.append(receiver)
    with pytest.raises(WebhookDeliveryError) as failure:
        HttpWebhookSender().post(receiver.base.replace("http://", "https://") + "/ok", b"{}", {})
    port = receiver.base.rsplit(":", 1)[1]
    assert failure.value.message.startswith(f"the TLS handshake with webhook 127.0.0.1:{port} failed: ")
