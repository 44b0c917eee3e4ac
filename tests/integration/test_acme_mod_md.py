"""Apache httpd's mod_md (Debian 12's apache2-bin 2.4.71, mod_md 2.6 with ARI and profiles) as a client of
moat's ACME server: it obtains a certificate for localhost with http-01 (moat connects back to apache's
own plain-http listener on 127.0.0.1), ordering moat's "server" profile; a graceful restart puts it in
service and mod_md polls moat's renewalInfo (RFC 9773) each second (MDCheckInterval 1s), which suggests
the usual window weeks ahead, so nothing is renewed. The operator then sets
acme_server.renew_issued_before to now and reloads moat: mod_md's next ARI check sees a window that has
begun, orders a new certificate that `replaces` the old one, and after the next graceful restart apache
serves it. Apache runs in the foreground with a config of the test's own in a folder of its own (its
children run as daemon), on free loopback ports, and is stopped by the test."""
import base64
import datetime
import os
import pathlib
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time

import pytest
from cryptography import x509

from acme_helpers import access_log, acme_site, issued, verify
from conftest import free_port, terminate, wait_port
from serve_helpers import config, wait_for

APACHE = "/usr/sbin/apache2"
MODULES = "/usr/lib/apache2/modules"


def b64(b):
    return base64.urlsafe_b64encode(b).decode().rstrip("=")


def apache_conf(m, root, tls_port):
    mods = ["mpm_event", "authz_core", "unixd", "watchdog", "ssl", "md", "log_config"]
    loads = "".join(f"LoadModule {n}_module {MODULES}/mod_{n}.so\n" for n in mods
                    if os.path.exists(f"{MODULES}/mod_{n}.so"))
    return f"""ServerRoot {root}
{loads}PidFile {root}/httpd.pid
ErrorLog {root}/error.log
LogLevel md:trace1 ssl:warn
DefaultRuntimeDir {root}
Mutex file:{root}
User daemon
Group daemon
ServerName localhost
Listen 127.0.0.1:{m.http01}
Listen 127.0.0.1:{tls_port} https
DocumentRoot {root}/htdocs
MDStoreDir {root}/md
MDCertificateAuthority {m.directory}
MDCACertificateFile {root}/root.pem
MDCertificateAgreement accepted
MDContactEmail ops@example.test
MDCAChallenges http-01
MDPortMap http:{m.http01} https:{tls_port}
MDProfile server
MDRenewViaARI on
MDCheckInterval 1s
MDRetryDelay 1s
MDActivationDelay 0s
MDomain localhost
<VirtualHost 127.0.0.1:{tls_port}>
    ServerName localhost
    SSLEngine on
</VirtualHost>
"""


@pytest.mark.skipif(not os.access(APACHE, os.X_OK), reason="needs apache2-bin (scripts/deps.sh test)")
def test_mod_md_obtains_and_renews_in_the_ari_window(acme_ca):
    m = acme_ca
    cfg_text = config(m, [acme_site(m)])
    m.serve(cfg_text, wait=(m.https, m.http))
    # Apache's children run as daemon: their folder (and the CA root they trust) must be reachable by it,
    # which the test's own folder (0700) is not.
    root = pathlib.Path(tempfile.mkdtemp(prefix="moat-mod-md-"))
    root.chmod(0o755)
    (root / "htdocs").mkdir()
    shutil.copy(m.dir / "root.pem", root / "root.pem")
    tls_port = free_port()
    (root / "httpd.conf").write_text(apache_conf(m, root, tls_port))
    log = open(root / "stdout", "ab")
    proc = subprocess.Popen([APACHE, "-f", str(root / "httpd.conf"), "-DFOREGROUND"], stdout=log,
                            stderr=subprocess.STDOUT)

    def err_log():
        p = root / "error.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def md_cert():
        """The newest certificate mod_md holds for localhost (staged, else active), or None."""
        assert proc.poll() is None, err_log()[-3000:]
        for d in ("staging", "domains"):
            p = root / "md" / d / "localhost" / "pubcert.pem"
            if p.exists() and "BEGIN CERTIFICATE" in p.read_text():
                return p
        return None

    def served_serial():
        """The serial of the certificate apache's https listener presents for localhost, verified against
        moat's root; None while it presents another (mod_md's self-signed fallback, the previous one)."""
        ctx = ssl.create_default_context(cafile=str(m.dir / "root.pem"))
        try:
            with socket.create_connection(("127.0.0.1", tls_port), timeout=10) as sock:
                with ctx.wrap_socket(sock, server_hostname="localhost") as tls:
                    return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number
        except OSError:
            return None

    def activate(cert):
        """A graceful restart (SIGUSR1) moves the staged certificate into service."""
        proc.send_signal(signal.SIGUSR1)
        active = root / "md" / "domains" / "localhost" / "pubcert.pem"

        def done():
            if (root / "md" / "staging" / "localhost").exists() or not active.exists():
                return False
            return x509.load_pem_x509_certificate(active.read_bytes()).serial_number == cert.serial_number
        assert wait_for(done, timeout=30), err_log()[-3000:]
        assert wait_for(lambda: served_serial() == cert.serial_number, timeout=30), served_serial()

    def renewed_now():
        return "CA advises renew via ARI now" in err_log()

    try:
        wait_port(m.http01, proc=proc)
        first = wait_for(md_cert, timeout=60)
        assert first, err_log()[-4000:]
        c1 = x509.load_pem_x509_certificate(first.read_bytes())
        verify(m, first)
        row = issued(m, c1.serial_number)
        assert row["name"].startswith("acme@") and "localhost" in row["subject"], row
        assert "ordering ACME profile 'server'" in err_log(), err_log()[-3000:]
        # mod_md stages what it obtains; a graceful restart (SIGUSR1) puts it in service, and from then on
        # its watchdog asks moat's renewalInfo about it.
        activate(c1)
        assert wait_for(lambda: "/acme/renewal-info/" in access_log(m), timeout=30), access_log(m)[-2000:]
        assert not renewed_now(), "renewed before moat asked"
        # The operator asks everything issued so far to renew now; moat's reload applies it.
        time.sleep(1)
        cut = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        time.sleep(1)
        (m.dir / "moat.yaml").write_text(config(m, [acme_site(m, f"renew_issued_before: '{cut}'")]))
        m.ok("reload", "-c", m.dir / "moat.yaml")

        def renewed():
            p = md_cert()
            if p is None:
                return None
            c = x509.load_pem_x509_certificate(p.read_bytes())
            return c if c.serial_number != c1.serial_number else None

        c2 = wait_for(renewed, timeout=90)
        assert c2, err_log()[-4000:]
        verify(m, md_cert())
        assert issued(m, c2.serial_number)["name"] == row["name"]
        log_text = err_log()
        assert renewed_now(), log_text[-4000:]
        # The new order names the certificate it replaces (RFC 9773 section 5): mod_md's trace of its payload.
        aki = c1.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
        ser = c1.serial_number.to_bytes((c1.serial_number.bit_length() + 8) // 8, "big")
        certid = f"{b64(aki)}.{b64(ser)}"
        assert re.search(r'acme payload\(len=\d+\): \{"identifiers":.*"replaces":"' + re.escape(certid) + '"',
                         log_text), log_text[-4000:]
        # In service after the next graceful restart: apache's https listener presents it.
        activate(c2)
    finally:
        terminate(proc, 20)
        log.close()
        shutil.rmtree(root, ignore_errors=True)
