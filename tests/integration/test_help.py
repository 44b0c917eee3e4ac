"""Every command's --help: walks `moat --help` and each group's list, and checks each text for its usage
line, an example that runs moat, and an explanation of every option the usage line names."""
import re


def groups(moat):
    out = moat.ok("--help").stdout
    block = out.split("commands:\n", 1)[1].split("\n\n", 1)[0]
    return [line.split()[0] for line in block.splitlines() if line.strip()]


def subcommands(moat, *group):
    r = moat.run(*group, "--help")
    if "commands:\n" not in r.stdout:
        return None
    block = r.stdout.split("commands:\n", 1)[1].split("\n\n", 1)[0]
    return [line.split()[0] for line in block.splitlines() if line.strip()]


def all_commands(moat, prefix=None):
    """Every command, nested groups ("acme eab new") included."""
    cmds = []
    for g in (groups(moat) if prefix is None else subcommands(moat, *prefix)):
        c = (g,) if prefix is None else prefix + (g,)
        subs = subcommands(moat, *c)
        cmds += [c] if subs is None else all_commands(moat, c)
    return cmds


def examples(text):
    """"example: moat ..." lines, or the lines of an "Examples:" block."""
    lines = text.splitlines()
    out = [line[len("example: "):] for line in lines if line.startswith("example: ")]
    if "Examples:" in lines:
        out += [line.strip() for line in lines[lines.index("Examples:") + 1:] if line.startswith("  moat ")]
    return out


def test_every_help_has_usage_example_and_its_options(moat):
    cmds = all_commands(moat)
    assert len(cmds) >= 37 and ("inspect",) in cmds and ("trust", "install-local") in cmds, cmds
    assert ("acme", "eab", "new") in cmds
    problems = []
    for c in cmds:
        r = moat.run(*c, "--help")
        text = r.stdout
        name = " ".join(c)
        if r.returncode != 0 or r.stderr:
            problems.append(f"{name}: exit {r.returncode}, stderr {r.stderr!r}")
            continue
        if not text.startswith(f"usage: moat {name}"):
            problems.append(f"{name}: starts {text[:40]!r}")
        ex = examples(text)
        if not ex or not all(re.match(r"(sudo )?moat ", e) for e in ex):
            problems.append(f"{name}: no example line")
        for e in ex:
            if name.split()[0] not in e.split():
                problems.append(f"{name}: the example does not run it: {e}")
        # The usage lines run until the first blank line; every option they name is explained below.
        usage, _, body = text.partition("\n\n")
        for opt in sorted(set(re.findall(r"(--[a-z][a-z0-9-]*)", usage))):
            if opt not in body:
                problems.append(f"{name}: {opt} is not explained")
    assert not problems, "\n".join(problems)


def test_help_of_groups_lists_their_commands(moat):
    for g in groups(moat):
        r = moat.ok(g, "--help")
        assert r.stdout.startswith("usage: moat"), (g, r.stdout)
