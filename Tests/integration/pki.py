"""Certificates for the TLS tests, made with the openssl command: a root CA, an intermediate, server
leaves (RSA, ECDSA through the intermediate, IP-only, another name, expired), leaves of other key
types and signature algorithms (P-384 signed with SHA-384, Ed25519, RSA through an RSA intermediate
that signs with RSA-PSS and SHA-512), a second unrelated CA, and client certificates with RSA
(PKCS#1 and PKCS#8), ECDSA (SEC1) and Ed25519 keys."""
import subprocess
from pathlib import Path

CA_CONFIG = """
[ca]
default_ca = ca_default
[ca_default]
dir = {dir}
database = {dir}/index.txt
serial = {dir}/serial
new_certs_dir = {dir}
default_md = sha256
policy = anything
copy_extensions = copy
unique_subject = no
[anything]
commonName = supplied
"""


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


class PKI:
    def __init__(self, d: Path):
        self.dir = d
        d.mkdir(parents=True, exist_ok=True)
        self._ca("root", "grpc-init test root")
        self._ca("other-root", "unrelated root")
        self._ca("intermediate", "grpc-init test intermediate", issuer="root")
        self.server_rsa = self._leaf("server-rsa", "localhost", "DNS:localhost,IP:127.0.0.1", issuer="root", key="rsa")
        self.server_ecdsa = self._leaf("server-ecdsa", "localhost", "DNS:localhost,IP:127.0.0.1", issuer="intermediate", key="ec",
                                       chain=True)
        leaf_only = d / "server-ecdsa-leaf.pem"
        openssl("x509", "-in", "server-ecdsa.pem", "-out", str(leaf_only), cwd=d)
        self.server_ecdsa_leaf_only = (leaf_only, d / "server-ecdsa.key")
        self.server_ip_only = self._leaf("server-ip", "127.0.0.1", "IP:127.0.0.1", issuer="root", key="ec")
        self.server_other_name = self._leaf("server-other", "other.example", "DNS:other.example,DNS:*.other.example", issuer="root", key="ec")
        self.server_expired = self._leaf("server-expired", "localhost", "DNS:localhost,IP:127.0.0.1", issuer="root", key="ec",
                                         dates=("20200101000000Z", "20200102000000Z"))
        self.server_untrusted = self._leaf("server-untrusted", "localhost", "DNS:localhost,IP:127.0.0.1", issuer="other-root", key="ec")
        localhost = "DNS:localhost,IP:127.0.0.1"
        self.server_p384_sha384 = self._leaf("server-p384", "localhost", localhost, issuer="root", key="ec-p384", md="sha384")
        self.server_ed25519 = self._leaf("server-ed25519", "localhost", localhost, issuer="root", key="ed25519")
        self.server_rsa_sha1 = self._leaf("server-rsa-sha1", "localhost", localhost, issuer="root", key="rsa", md="sha1")
        self._ca("rsa-intermediate", "grpc-init test RSA intermediate", issuer="root", key="rsa")
        self.server_rsa_pss_sha512 = self._leaf("server-rsa-pss", "localhost", localhost, issuer="rsa-intermediate", key="rsa",
                                                chain=True, md="sha512", sigopts=["rsa_padding_mode:pss", "rsa_pss_saltlen:64"])
        # A root whose subject (and issuer) are long enough that its subject ends past the first
        # 512 bytes of the certificate.
        units = "".join(f"/OU=grpc-init test organisational unit number {i:02} of many" for i in range(8))
        self._ca("long-name-root", "grpc-init test root with a long name", subject_prefix=f"/O=grpc-init tests{units}")
        self.server_under_long_name_root = self._leaf("server-long-name-root", "localhost", localhost, issuer="long-name-root",
                                                      key="ec")
        self.long_name_root = d / "long-name-root.pem"
        self.client_rsa_pkcs1 = self._leaf("client-rsa", "client", "DNS:client", issuer="root", key="rsa", client=True)
        openssl("rsa", "-in", "client-rsa.key", "-out", "client-rsa-pkcs1.key", "-traditional", cwd=d)
        self.client_rsa_pkcs1 = (self.client_rsa_pkcs1[0], d / "client-rsa-pkcs1.key")
        self.client_rsa_pkcs8 = self._leaf("client-rsa8", "client", "DNS:client", issuer="root", key="rsa", client=True)
        self.client_ec_sec1 = self._leaf("client-ec", "client", "DNS:client", issuer="root", key="ec-sec1", client=True)
        self.client_ed25519 = self._leaf("client-ed", "client", "DNS:client", issuer="root", key="ed25519", client=True)
        self.client_untrusted = self._leaf("client-untrusted", "client", "DNS:client", issuer="other-root", key="ec", client=True)
        self.ca = d / "root.pem"
        self.intermediate = d / "intermediate.pem"
        # Names only in the Common Name, no subjectAltName (Go has ignored the CN since 1.15).
        self.server_cn_only = self._cn_only("server-cn-only", "localhost")
        self.server_cn_ip_only = self._cn_only("server-cn-ip-only", "127.0.0.1")
        # SPIFFE: two trust domains; SVIDs carry their ID as a URI SAN.
        self._ca("spiffe-example", "example.org SPIFFE CA")
        self._ca("spiffe-other", "other.org SPIFFE CA")
        self.spiffe_ca, self.spiffe_other_ca = d / "spiffe-example.pem", d / "spiffe-other.pem"
        self.spiffe_server = self._leaf("spiffe-server", "server", "URI:spiffe://example.org/server", issuer="spiffe-example", key="ec")
        self.spiffe_probe = self._leaf("spiffe-probe", "probe", "URI:spiffe://example.org/probe", issuer="spiffe-example", key="ec",
                                       client=True)
        self.spiffe_probe_rotated = self._leaf("spiffe-probe-rotated", "probe-rotated", "URI:spiffe://example.org/probe",
                                               issuer="spiffe-example", key="ec", client=True)
        self.spiffe_other_server = self._leaf("spiffe-other-server", "server", "URI:spiffe://other.org/server",
                                              issuer="spiffe-other", key="ec")
        self.spiffe_other_probe = self._leaf("spiffe-other-probe", "probe", "URI:spiffe://other.org/probe",
                                             issuer="spiffe-other", key="ec", client=True)
        self.spiffe_impostor_server = self._leaf("spiffe-impostor", "server", "URI:spiffe://example.org/server",
                                                 issuer="spiffe-other", key="ec")
        self.spiffe_no_id_server = self._leaf("spiffe-no-id", "localhost", "DNS:localhost", issuer="spiffe-example", key="ec")
        self.spiffe_two_ids_server = self._leaf("spiffe-two-ids", "server", "URI:spiffe://example.org/a,URI:spiffe://example.org/b",
                                                issuer="spiffe-example", key="ec")
        self._key("spiffe-ca-leaf", "ec")  # a server certificate that is also a CA
        self._sign("spiffe-ca-leaf", "server", "spiffe-example",
                   ["subjectAltName=URI:spiffe://example.org/server", "basicConstraints=critical,CA:TRUE", "extendedKeyUsage=serverAuth"])
        self.spiffe_ca_leaf_server = (d / "spiffe-ca-leaf.pem", d / "spiffe-ca-leaf.key")

    def _key(self, name, kind):
        if kind == "rsa":
            openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", f"{name}.key", cwd=self.dir)
        elif kind == "ec":
            openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", f"{name}.key", cwd=self.dir)
        elif kind == "ec-p384":
            openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-out", f"{name}.key", cwd=self.dir)
        elif kind == "ec-sec1":
            openssl("ecparam", "-genkey", "-name", "prime256v1", "-noout", "-out", f"{name}.key", cwd=self.dir)
        elif kind == "ed25519":
            openssl("genpkey", "-algorithm", "ed25519", "-out", f"{name}.key", cwd=self.dir)

    def _ca(self, name, cn, issuer=None, key="ec", subject_prefix=""):
        self._key(name, key)
        if issuer is None:
            openssl("req", "-x509", "-new", "-key", f"{name}.key", "-out", f"{name}.pem", "-days", "30", "-subj", f"{subject_prefix}/CN={cn}",
                    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=self.dir)
        else:
            self._sign(name, cn, issuer, ["basicConstraints=critical,CA:TRUE", "keyUsage=critical,keyCertSign,cRLSign"])

    def _sign(self, name, cn, issuer, extensions, dates=None, md=None, sigopts=()):
        d = self.dir
        openssl("req", "-new", "-key", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}",
                *sum((["-addext", e] for e in extensions), []), cwd=d)
        ca_dir = d / f"ca-{issuer}"
        if not ca_dir.exists():
            ca_dir.mkdir()
            (ca_dir / "index.txt").write_text("")
            (ca_dir / "serial").write_text("1000\n")
            (ca_dir / "ca.cnf").write_text(CA_CONFIG.format(dir=ca_dir))
        start, end = dates or ("", "")
        args = ["ca", "-batch", "-notext", "-config", str(ca_dir / "ca.cnf"), "-cert", f"{issuer}.pem", "-keyfile", f"{issuer}.key",
                "-in", f"{name}.csr", "-out", f"{name}.pem"]
        args += ["-startdate", start, "-enddate", end] if dates else ["-days", "30"]
        args += ["-md", md] if md else []
        args += sum((["-sigopt", o] for o in sigopts), [])
        openssl(*args, cwd=d)

    def _cn_only(self, name, cn):
        self._key(name, "ec")
        self._sign(name, cn, "root", ["extendedKeyUsage=serverAuth"])
        return self.dir / f"{name}.pem", self.dir / f"{name}.key"

    def _leaf(self, name, cn, san, issuer, key, client=False, chain=False, dates=None, md=None, sigopts=()):
        self._key(name, key)
        usage = "clientAuth" if client else "serverAuth"
        self._sign(name, cn, issuer, [f"subjectAltName={san}", f"extendedKeyUsage={usage}"], dates, md, sigopts)
        cert = self.dir / f"{name}.pem"
        if chain:  # the server presents leaf + intermediate
            cert.write_text(cert.read_text() + (self.dir / f"{issuer}.pem").read_text())
        return cert, self.dir / f"{name}.key"
