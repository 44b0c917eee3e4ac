"""Headless Debian Chromium as a client: an NSS database under a throwaway $HOME (the only place Chromium
takes trust anchors and client certificates from on Linux), page loads with --dump-dom, and the two ways
of making Chromium pick a client certificate without a person clicking."""
import contextlib
import fcntl
import json
import os
import pathlib
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
POLICY_DIR = pathlib.Path("/etc/chromium/policies/managed")
# Chromium reads the policy directory of the whole machine and, when several files set the same policy,
# keeps the one whose file name sorts last instead of merging them: concurrent runs take turns.
POLICY_LOCK = pathlib.Path(tempfile.gettempdir()) / "moat-chromium-policy.lock"
POLICY_PREFIX = "moat-test-"

needs_chromium = pytest.mark.skipif(
    not os.path.exists(CHROMIUM) or not shutil.which("certutil") or not shutil.which("pk12util"),
    reason="needs chromium and libnss3-tools (scripts/deps.sh test installs them)")


def nss_home(home, ca_pem, p12=None, password_file=None):
    """A $HOME whose NSS database trusts <ca_pem> for TLS servers and, with <p12>, holds that client
    certificate and key. Returns the environment for Chromium."""
    nss = pathlib.Path(home) / ".pki" / "nssdb"
    nss.mkdir(parents=True)
    env = dict(os.environ, HOME=str(home))
    db = f"sql:{nss}"
    for args in (["certutil", "-N", "--empty-password", "-d", db],
                 ["certutil", "-A", "-t", "C,,", "-n", "moat test root", "-i", str(ca_pem), "-d", db]):
        subprocess.run(args, check=True, env=env, capture_output=True, timeout=60)
    if p12 is not None:
        r = subprocess.run(["pk12util", "-i", str(p12), "-w", str(password_file), "-d", db], env=env,
                           capture_output=True, timeout=60)
        assert r.returncode == 0, f"pk12util could not import {p12}: {r.stdout!r} {r.stderr!r}"
    return env


def auto_select_rule(origin, issuer_cn):
    """The AutoSelectCertificateForUrls entry: certificates issued by <issuer_cn>, for <origin> only."""
    return {"pattern": origin, "filter": {"ISSUER": {"CN": issuer_cn}}}


def profile_with_auto_select(profile, origin, issuer_cn):
    """A Chromium profile that picks the client certificate for <origin> by itself: the per-profile
    content setting that the AutoSelectCertificateForUrls policy also fills, without touching /etc."""
    rule = auto_select_rule(origin, issuer_cn)
    prefs = {"profile": {"content_settings": {"exceptions": {"auto_select_certificate": {
        f"{origin},*": {"setting": {"filters": [rule["filter"]]}}}}}}}
    default = pathlib.Path(profile) / "Default"
    default.mkdir(parents=True)
    (default / "Preferences").write_text(json.dumps(prefs))


@contextlib.contextmanager
def auto_select_policy(origin, issuer_cn, lock_timeout=60.0):
    """Installs the AutoSelectCertificateForUrls policy for <origin> in Chromium's system policy
    directory for the duration of the block, then removes it (and the directories it had to create)."""
    if os.geteuid() != 0:
        pytest.skip(f"writing Chromium's managed policy under {POLICY_DIR} needs root")
    with open(POLICY_LOCK, "a") as lock:
        deadline = time.time() + lock_timeout
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                assert time.time() < deadline, f"{POLICY_LOCK} held for over {lock_timeout:.0f}s"
                time.sleep(0.1)
        created = [d for d in (POLICY_DIR.parent, POLICY_DIR) if not d.exists()]
        POLICY_DIR.mkdir(parents=True, exist_ok=True)
        # whoever held the lock before us removed its file, unless it was killed: that one is stale
        for stale in POLICY_DIR.glob(POLICY_PREFIX + "*.json"):
            stale.unlink()
        foreign = [p.name for p in sorted(POLICY_DIR.glob("*.json"))
                   if "AutoSelectCertificateForUrls" in p.read_text(errors="replace")]
        if foreign:
            pytest.skip(f"{POLICY_DIR}/{foreign[0]} already sets AutoSelectCertificateForUrls, which would "
                        "replace the test's entry")
        path = POLICY_DIR / f"{POLICY_PREFIX}{os.getpid()}.json"
        try:
            path.write_text(json.dumps({"AutoSelectCertificateForUrls":
                                        [json.dumps(auto_select_rule(origin, issuer_cn))]}))
            yield path
        finally:
            path.unlink(missing_ok=True)
            for d in reversed(created):
                with contextlib.suppress(OSError):
                    d.rmdir()


def dump_dom(url, env, profile, timeout=20):
    """Loads <url> in headless Chromium and returns (DOM after load, stderr, timed out).

    Debian's chromium 13x+ has only the "new" headless mode (the old one moved to a separate
    headless shell), which is the whole browser without windows: its client certificate chooser is a
    dialog nobody can answer. With a client certificate in NSS and no auto-select rule matching the
    site, it waits forever; with no client certificate at all it goes on without one. Hence the timeout,
    and a process group of its own so that no renderer outlives it."""
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", "--disable-sync", f"--user-data-dir={profile}",
            "--dump-dom", url]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    return out.decode(errors="replace"), err.decode(errors="replace"), timed_out
