"""TLS on SSL listeners (issue 18, first part): confluent-kafka and kafka-python over
real TLS (rustls in the broker), kcat with a client certificate (ssl.client.auth),
and what is refused: a client without a certificate where one is required, an
untrusted certificate, plaintext spoken to the TLS port and TLS to the plaintext one.
Certificates are made here with the openssl command."""
import os
import socket
import ssl
import subprocess
import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import BIN, Broker, free_port


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem",
            "-days", "2", "-subj", f"/CN={name}", cwd=d)


def make_cert(d, ca, name, cn, ext):
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN={cn}", cwd=d)
    args = ["x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2"]
    # Extensions make an X.509 v3 certificate (rustls, like browsers, takes no v1).
    (d / f"{name}.ext").write_text(ext + "\n")
    openssl(*args, "-extfile", f"{name}.ext", cwd=d)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    make_ca(d, "ca")
    make_ca(d, "rogue-ca")
    make_cert(d, "ca", "server", "localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1")
    make_cert(d, "ca", "client", "alice", "extendedKeyUsage=clientAuth")
    make_cert(d, "rogue-ca", "rogue", "mallory", "extendedKeyUsage=clientAuth")
    (d / "keystore.pem").write_text((d / "server.pem").read_text() + (d / "server.key").read_text())
    return d


def tls_broker(tmp_path, certs, client_auth="none"):
    plain, tls = free_port(), free_port()
    props = tmp_path / "server.properties"
    props.write_text(f"""listeners=PLAINTEXT://127.0.0.1:{plain},SSL://127.0.0.1:{tls}
ssl.keystore.type=PEM
ssl.keystore.location={certs / "keystore.pem"}
ssl.truststore.location={certs / "ca.pem"}
ssl.client.auth={client_auth}
log.dirs={tmp_path / "logs"}
""")
    b = Broker(tmp_path / "unused", plain)
    b.tls_port = tls

    def launch():
        b.log = open(b.log_path, "ab")
        b.proc = subprocess.Popen([str(BIN), "server", "--config", str(props)], stdout=b.log,
                                  stderr=subprocess.STDOUT, env=dict(os.environ, SLUICE_LOG="info"))
        return b
    b.launch = launch
    return b.start()


def ssl_conf(b, certs, **extra):
    conf = {"bootstrap.servers": f"localhost:{b.tls_port}", "security.protocol": "SSL",
            "ssl.ca.location": str(certs / "ca.pem")}
    conf.update(extra)
    return conf


def read_all(conf, topic, n, group):
    c = Consumer(dict(conf, **{"group.id": group, "auto.offset.reset": "earliest"}))
    c.subscribe([topic])
    got, deadline = [], time.time() + 30
    try:
        while len(got) < n and time.time() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got.append(m.value())
    finally:
        c.close()
    return got


def test_clients_produce_and_consume_over_tls(tmp_path, certs):
    b = tls_broker(tmp_path, certs)
    try:
        conf = ssl_conf(b, certs)
        admin = AdminClient(conf)
        admin.create_topics([NewTopic("tls", 3, 1)])["tls"].result()
        p = Producer(dict(conf, acks="all", **{"enable.idempotence": True}))
        for i in range(2000):
            p.produce("tls", key=b"k%d" % (i % 50), value=b"v%d" % i)
        assert p.flush(30) == 0
        got = read_all(conf, "tls", 2000, "tls-g")
        assert sorted(got) == sorted(b"v%d" % i for i in range(2000))
        # kafka-python speaks TLS through Python's ssl module.
        from kafka import KafkaConsumer, KafkaProducer
        kp = KafkaProducer(bootstrap_servers=conf["bootstrap.servers"], security_protocol="SSL",
                           ssl_cafile=str(certs / "ca.pem"))
        for i in range(100):
            kp.send("tls", b"kp%d" % i)
        kp.flush(30)
        kp.close()
        kc = KafkaConsumer("tls", bootstrap_servers=conf["bootstrap.servers"], security_protocol="SSL",
                           ssl_cafile=str(certs / "ca.pem"), auto_offset_reset="earliest",
                           consumer_timeout_ms=10000)
        values = {m.value for m in kc}
        kc.close()
        assert {b"kp%d" % i for i in range(100)} <= values
        assert len(values) == 2100
    finally:
        b.stop()
    assert "panicked" not in b.output()


def test_wrong_protocols_on_each_port_are_refused_and_the_broker_stays_up(tmp_path, certs):
    b = tls_broker(tmp_path, certs)
    try:
        # Plaintext Kafka bytes to the TLS port: the handshake fails, the connection closes.
        with socket.create_connection(("127.0.0.1", b.tls_port), timeout=5) as s:
            s.sendall(b"\x00\x00\x00\x15\x00\x12\x00\x03\x00\x00\x00\x01\x00\x03abc\x00\x00\x00\x00\x00")
            s.settimeout(5)
            try:
                data = s.recv(4096)
            except (ConnectionResetError, socket.timeout):
                data = b""
            assert not data.startswith(b"\x00\x00"), "no Kafka response over the TLS port"
        # TLS to the plaintext port: the ClientHello is not a valid frame; closed.
        ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
        with socket.create_connection(("127.0.0.1", b.port), timeout=5) as raw:
            with pytest.raises((ssl.SSLError, ConnectionResetError, OSError)):
                ctx.wrap_socket(raw, server_hostname="localhost").do_handshake()
        # A client that does not trust the broker's CA gives up; nothing is served.
        c = AdminClient(ssl_conf(b, certs, **{"ssl.ca.location": str(certs / "rogue-ca.pem")}))
        with pytest.raises(KafkaException):
            c.list_topics(timeout=5)
        # The broker still serves both ports.
        assert AdminClient(ssl_conf(b, certs)).list_topics(timeout=10) is not None
        assert AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(timeout=10) is not None
        assert b.alive()
        assert "TLS handshake failed" in b.output()
    finally:
        b.stop()
    assert "panicked" not in b.output()


def test_client_certificates_when_required(tmp_path, certs):
    b = tls_broker(tmp_path, certs, client_auth="required")
    try:
        with_cert = ssl_conf(b, certs, **{"ssl.certificate.location": str(certs / "client.pem"),
                                          "ssl.key.location": str(certs / "client.key")})
        admin = AdminClient(with_cert)
        admin.create_topics([NewTopic("mtls", 1, 1)])["mtls"].result()
        # kcat (librdkafka 2.0) with a client certificate produces and reads back.
        kcat = ["kcat", "-b", with_cert["bootstrap.servers"], "-X", "security.protocol=SSL",
                "-X", f"ssl.ca.location={certs / 'ca.pem'}",
                "-X", f"ssl.certificate.location={certs / 'client.pem'}",
                "-X", f"ssl.key.location={certs / 'client.key'}"]
        subprocess.run(kcat + ["-P", "-t", "mtls"], input=b"one\ntwo\nthree\n", check=True, timeout=60)
        out = subprocess.run(kcat + ["-C", "-t", "mtls", "-o", "beginning", "-c", "3", "-e"],
                             capture_output=True, check=True, timeout=60).stdout
        assert out.split() == [b"one", b"two", b"three"]
        # No certificate, or one from a CA the broker does not trust: refused.
        for conf in [ssl_conf(b, certs),
                     ssl_conf(b, certs, **{"ssl.certificate.location": str(certs / "rogue.pem"),
                                           "ssl.key.location": str(certs / "rogue.key")})]:
            with pytest.raises(KafkaException):
                AdminClient(conf).list_topics(timeout=5)
        assert b.alive()
    finally:
        b.stop()
    assert "panicked" not in b.output()


def test_tls_settings_that_cannot_be_loaded_stop_the_broker_by_name(tmp_path, certs):
    port, tls = free_port(), free_port()
    props = tmp_path / "server.properties"
    props.write_text(f"""listeners=PLAINTEXT://127.0.0.1:{port},SSL://127.0.0.1:{tls}
ssl.keystore.location={tmp_path / "missing.pem"}
log.dirs={tmp_path / "logs"}
""")
    r = subprocess.run([str(BIN), "server", "--config", str(props)], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "ssl.keystore.location" in r.stderr and "missing.pem" in r.stderr, r.stderr
