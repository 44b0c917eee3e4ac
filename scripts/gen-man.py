#!/usr/bin/python3
"""Writes the man pages moat(1) and moat.yaml(5) into OUTDIR.

moat(1) comes from the binary's own --help texts (moat --help, each group's command list, each command's
--help), so it says what the binary says; moat.yaml(5) from the key reference of docs/config.md, which is
generated from the config's field tables. Usage: gen-man.py MOAT_BINARY DOCS_CONFIG_MD OUTDIR
"""
import os
import re
import subprocess
import sys


def run(binary, *args):
    env = dict(os.environ, MOAT_CONFIG="", NO_COLOR="1")
    r = subprocess.run([binary, *args], capture_output=True, text=True, timeout=60, env=env,
                       cwd="/")
    if r.returncode != 0:
        sys.exit(f"gen-man: {' '.join(args)} exited {r.returncode}: {r.stderr}")
    return r.stdout


def listed(text):
    """The command names of a "commands:" block."""
    if "commands:\n" not in text:
        return None
    block = text.split("commands:\n", 1)[1].split("\n\n", 1)[0]
    return [line.split()[0] for line in block.splitlines() if line.strip()]


def commands(binary, prefix=()):
    out = []
    for name in listed(run(binary, *prefix, "--help")):
        c = prefix + (name,)
        text = run(binary, *c, "--help")
        sub = listed(text)
        out += [(c, text)] if sub is None else commands(binary, c)
    return out


def esc(line):
    """A line of text for roff: backslashes escaped, no line starting with a control character."""
    line = line.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + line if line[:1] in (".", "'") else line


def block(text):
    return ".nf\n" + "\n".join(esc(line) for line in text.rstrip("\n").splitlines()) + "\n.fi\n"


def moat1(binary):
    top = run(binary, "--help")
    version = run(binary, "version").split()[1]
    head, _, rest = top.partition("\n\n")
    glob = top.split("global options:\n", 1)[1].split("\n\n", 1)[0]
    status = [line for line in top.splitlines() if line.startswith("exit status")]
    cmds = commands(binary)
    examples = []
    out = [f'.TH MOAT 1 "" "moat {version}" "User Commands"',
           ".SH NAME", "moat \\- HTTPS server, key manager and certificate authority",
           ".SH SYNOPSIS", ".B moat", "[global options] COMMAND [args]",
           ".SH DESCRIPTION",
           esc("moat serves sites over HTTPS (HTTP/1.1 and HTTP/2), keeps their keys and certificates in an "
               "encrypted store, runs a certificate authority with CRL and OCSP, obtains certificates over "
               "ACME and checks client certificates. Every command below says what it does with --help; "
               "moat.yaml(5) describes the configuration file."),
           ".SH GLOBAL OPTIONS", block(glob).rstrip("\n"),
           ".SH COMMANDS"]
    for c, text in cmds:
        out.append(f'.SS "moat {" ".join(c)}"')
        out.append(block(text).rstrip("\n"))
        examples += [line[len("example: "):] for line in text.splitlines() if line.startswith("example: ")]
    out += [".SH EXAMPLES", ".nf"] + [esc(e) for e in examples] + [".fi"]
    out += [".SH ENVIRONMENT",
            ".TP", ".B MOAT_STORE", esc("the store (a path, or sqlite:PATH), when --store is not given"),
            ".TP", ".B MOAT_CONFIG", esc("the config file, when -c is not given (else ./moat.yaml when present)"),
            ".TP", ".B MOAT_MASTER_KEY_FILE", esc("the master key, when --master-key is not given"),
            ".TP", ".B XDG_DATA_HOME", esc("the default store of a user other than root: $XDG_DATA_HOME/moat/moat.db"),
            ".TP", ".B NO_COLOR", esc("no colours in moat doctor's output"),
            ".TP", ".B NOTIFY_SOCKET", esc("set by systemd: moat serve reports READY, RELOADING and its generation"),
            ".SH FILES",
            ".TP", ".I /var/lib/moat/moat.db", esc("the store of root (keys, certificates, CA, audit log)"),
            ".TP", ".I /var/lib/moat/moat.db.key", esc("its master key, beside the store (0600)"),
            ".TP", ".I STORE.pid", esc("the pid of the running server, for moat reload"),
            ".TP", ".I ./moat.yaml", esc("the config used when neither -c nor MOAT_CONFIG names one"),
            ".TP", ".I /usr/local/share/ca-certificates/moat\\-*.crt",
            esc("moat's root as moat trust install-local puts it in the system trust store"),
            ".SH EXIT STATUS"] + [esc(s) for s in status] + [
            ".SH SEE ALSO", "moat.yaml(5), update\\-ca\\-certificates(8), openssl(1)"]
    return "\n".join(out) + "\n"


def cells(row):
    """The cells of a Markdown table row; "\\|" is a pipe inside a cell."""
    parts = re.split(r"(?<!\\)\|", row.strip().strip("|"))
    return [p.strip().replace("\\|", "|") for p in parts]


def plain(md):
    """Markdown inline text as roff text."""
    return esc(re.sub(r"\*{1,2}([^*]+)\*{1,2}", r"\1", md.replace("`", "")))


def moat_yaml5(binary, config_md):
    version = run(binary, "version").split()[1]
    lines = open(config_md, encoding="utf-8").read().splitlines()
    intro, example, i = [], [], 1
    while i < len(lines) and not lines[i].startswith("```"):
        if lines[i].strip():
            intro.append(lines[i])
        i += 1
    i += 1
    while i < len(lines) and not lines[i].startswith("```"):
        example.append(lines[i])
        i += 1
    out = [f'.TH MOAT.YAML 5 "" "moat {version}" "File Formats"',
           ".SH NAME", "moat.yaml \\- the configuration file of moat",
           ".SH DESCRIPTION", plain(" ".join(intro)),
           ".SH EXAMPLE", ".nf"] + [esc(e) for e in example] + [".fi", ".SH KEYS"]
    ref = lines.index("## Key reference")
    nkeys = 0
    for line in lines[ref:]:
        if line.startswith("### "):
            out.append(f'.SS "{esc(line[4:])}"')
        elif line.startswith("| `"):
            key, typ, default, meaning = (cells(line) + ["", "", "", ""])[:4]
            out += [".TP", f'.B {esc(key.strip("`"))}',
                    plain(f"({typ}; default {default}) " if default != "-" else f"({typ}) ") + plain(meaning)]
            nkeys += 1
    if nkeys == 0:
        sys.exit("gen-man: no key tables found in " + config_md)
    out += [".SH FILES", ".TP", ".I ./moat.yaml", esc("read when neither -c nor MOAT_CONFIG names a config"),
            ".SH SEE ALSO", "moat(1)"]
    return "\n".join(out) + "\n"


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    binary, config_md, outdir = os.path.abspath(sys.argv[1]), sys.argv[2], sys.argv[3]
    os.makedirs(outdir, exist_ok=True)
    for name, text in (("moat.1", moat1(binary)), ("moat.yaml.5", moat_yaml5(binary, config_md))):
        tmp = os.path.join(outdir, name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, os.path.join(outdir, name))


if __name__ == "__main__":
    main()
