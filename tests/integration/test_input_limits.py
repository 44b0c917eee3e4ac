"""One SAN limit for --san and signed requests (a CSR with 10,000 names was signed); a master key that is a
FIFO (which hung every command) or a folder (called "mode 755") is refused as not a file."""
import os

from keymgr_helpers import openssl


def test_a_request_with_too_many_names_is_refused(moat):
    moat.ok("ca", "init", "--cn", "SAN Root")
    ext = moat.dir / "sans.cnf"
    names = ",".join(f"DNS:h{i}.example.com" for i in range(65))
    ext.write_text(f"[req]\ndistinguished_name=dn\nreq_extensions=ext\n[dn]\n[ext]\nsubjectAltName={names}\n")
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
            moat.dir / "s.key", "-subj", "/CN=h0.example.com", "-config", ext, "-out", moat.dir / "s.csr")
    r = moat.fails("ca", "sign", "s.csr", "--out", "s.pem")
    assert "65 subject alternative names" in r.stderr and "at most 64" in r.stderr, r.stderr
    assert not (moat.dir / "s.pem").exists()
    r = moat.fails("ca", "issue", "x", "--cn", "x.example.com",
                   *[a for i in range(65) for a in ("--san", f"DNS:h{i}.example.com")], code=2)
    assert "64" in r.stderr


def test_a_master_key_that_is_not_a_file(moat):
    moat.ok("ca", "init", "--cn", "MK Root")
    key = moat.dir / "moat.db.key"
    key.rename(moat.dir / "real.key")
    os.mkfifo(key, 0o600)
    r = moat.fails("ca", "issue", "w", "--cn", "w.example.com", timeout=20)
    assert "is not a file (a FIFO)" in r.stderr, r.stderr
    key.unlink()
    key.mkdir(mode=0o700)
    r = moat.fails("ca", "issue", "w", "--cn", "w.example.com", timeout=20)
    assert "is not a file (a folder)" in r.stderr, r.stderr


def test_a_damaged_format_byte_is_called_damage_not_read_only(moat):
    moat.ok("ca", "init", "--cn", "Hdr Root")
    data = bytearray(moat.store.read_bytes())
    data[18] ^= 0x10  # the write-version byte of the header
    moat.store.write_bytes(bytes(data))
    r = moat.fails("ca", "issue", "w", "--cn", "w.example.com")
    assert "damaged" in r.stderr and "bytes 18-19" in r.stderr and "read-only" not in r.stderr, r.stderr
