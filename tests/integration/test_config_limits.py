"""Configs that took libyaml (nesting) or the duplicate-key check (many keys) quadratic time are refused
quickly, with file:line:column: 100,000 nested brackets took 64 s, 200,000 keys more than 60 s."""
import time


def check_fast(moat, name, text, expect):
    (moat.dir / name).write_text(text)
    t0 = time.time()
    r = moat.fails("serve", "--check", "-c", name, timeout=30)
    took = time.time() - t0
    assert expect in r.stderr, r.stderr
    assert f"{name}:" in r.stderr.splitlines()[0], r.stderr
    assert took < 10, f"{took:.1f} s"
    return r


def test_deep_nesting_is_refused_quickly(moat):
    r = check_fast(moat, "deep.yaml", "root: " + "[" * 100000 + "]" * 100000 + "\n",
                   "collections nested more than 64 deep")
    assert "deep.yaml:1:71:" in r.stderr
    check_fast(moat, "deepmap.yaml", "sites:\n  - hosts: " + "{a: " * 1000 + "b" + "}" * 1000 + "\n",
               "nested more than 64 deep")


def test_brackets_in_quotes_and_comments_do_not_count(moat):
    text = "# " + "[" * 100 + "\nstore: './s" + "[" * 100 + ".db'\nsites: []\n"
    (moat.dir / "ok.yaml").write_text(text)
    r = moat.run("serve", "--check", "-c", "ok.yaml", timeout=60)
    assert "nested" not in r.stderr, r.stderr


def test_many_keys_are_refused_quickly(moat):
    check_fast(moat, "keys.yaml", "".join(f"k{i}: {i}\n" for i in range(200000)),
               "200000 keys in one mapping; expected at most 1000")
    check_fast(moat, "sitekeys.yaml", "sites:\n  - hosts: [a]\n" + "".join(f"    k{i}: {i}\n" for i in range(50000)),
               "keys in one mapping")
