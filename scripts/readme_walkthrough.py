#!/usr/bin/env python3
"""Runs the walk-through of README.md, as written, and checks every output it shows.

A walk-through block is a ```sh block whose first line starts with "# walk-through". In it,
a line starting with "$ " is a command; the lines after it, up to the next command, are what it
prints (stdout and stderr together). In expected output:
  ...        a line of its own: any number of lines;
  <PIN>      a temporary PIN;   <serial>   a serial in hex;   <time>   an RFC 3339 time;
  <n>        a number;          <...>      anything on the line.
A command ending in "&" runs in the background; the next command waits until certgate's ops
listener answers /readyz. Every command must exit 0.

Documented substitutions (README.md says so too): ports 8443/8444 and 9090/9091 become free
ports, and `cargo run --release --` runs target/release/certgate, which this script links to the
freshly built debug binary. Usage: readme_walkthrough.py README BINARY WORKDIR
"""
import os
import re
import socket
import subprocess
import sys

PLACEHOLDERS = {
    "<PIN>": r"[A-Za-z0-9]{12,}",
    "<serial>": r"[0-9a-f]{2,64}",
    "<time>": r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z",
    "<n>": r"-?\d+",
    "<...>": r".*?",
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def blocks(readme):
    """Each walk-through block as (title, [(command, [expected lines])])."""
    found = []
    lines = readme.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```sh" and i + 1 < len(lines) and lines[i + 1].startswith("# walk-through"):
            title = lines[i + 1]
            i += 2
            steps = []
            while i < len(lines) and lines[i].strip() != "```":
                line = lines[i]
                if line.startswith("$ "):
                    steps.append((line[2:], []))
                elif steps:
                    steps[-1][1].append(line)
                i += 1
            found.append((title, steps))
        i += 1
    return found


def line_pattern(line):
    out = ""
    rest = line
    while rest:
        match = re.search(r"<PIN>|<serial>|<time>|<n>|<\.\.\.>", rest)
        if not match:
            out += re.escape(rest)
            break
        out += re.escape(rest[: match.start()]) + PLACEHOLDERS[match.group(0)]
        rest = rest[match.end():]
    return re.compile(r"\A" + out + r"\Z")


def matches(expected, actual):
    """Whether the actual lines match the expected ones, `...` being any lines."""
    if not expected:
        return not actual
    if expected[0] == "...":
        return any(matches(expected[1:], actual[k:]) for k in range(len(actual) + 1))
    return bool(actual) and line_pattern(expected[0]).match(actual[0]) is not None and matches(
        expected[1:], actual[1:]
    )


def main():
    readme_path, binary, work = sys.argv[1], os.path.abspath(sys.argv[2]), sys.argv[3]
    readme = open(readme_path, encoding="utf-8").read()
    ports = {"8443": str(free_port()), "8444": str(free_port()), "9090": str(free_port()), "9091": str(free_port())}

    def substitute(text):
        for port, free in ports.items():
            text = text.replace(port, free)
        return text.replace("cargo run --release --", "target/release/certgate")

    walk = blocks(readme)
    if not walk:
        sys.exit("readme-test: no walk-through blocks (```sh starting with '# walk-through') in " + readme_path)
    os.makedirs(os.path.join(work, "target", "release"), exist_ok=True)
    os.symlink(binary, os.path.join(work, "target", "release", "certgate"))
    os.makedirs(os.path.join(work, "config"), exist_ok=True)
    shipped = open(os.path.join("config", "certgate.toml"), encoding="utf-8").read()
    open(os.path.join(work, "config", "certgate.toml"), "w", encoding="utf-8").write(substitute(shipped))

    steps = [(title, substitute(command), [substitute(line) for line in expected], command)
             for title, block in walk for command, expected in block]
    # Whatever happens (a failed step exits at once), the servers it started are stopped.
    script = ["set -m", "set -u", "trap 'jobs -p | xargs -r kill 2>/dev/null; wait' EXIT",
              f'cd "{work}"', 'export CERTGATE_TEST_WORK="$PWD"']
    for index, (_, command, _, _) in enumerate(steps):
        if command.rstrip().endswith("&"):
            script.append(f"{command.rstrip()[:-1]} > bg-{index}.log 2>&1 &")
            script.append(
                f"for i in $(seq 600); do curl -s -o /dev/null -f http://127.0.0.1:{ports['9090']}/readyz && break; "
                f"kill -0 $! 2>/dev/null || {{ echo died > rc-{index}; break; }}; sleep 0.1; done"
            )
        else:
            script.append(f"{{ {command}\n}} > out-{index}.txt 2>&1; echo $? > rc-{index}")
            script.append(f"[ \"$(cat rc-{index})\" = 0 ] || exit 1")
    script.append("jobs -p | xargs -r kill 2>/dev/null; wait")
    open(os.path.join(work, "walkthrough.sh"), "w", encoding="utf-8").write("\n".join(script) + "\n")
    subprocess.run(["bash", "walkthrough.sh"], cwd=work, timeout=600)

    failures = 0
    for index, (title, command, expected, original) in enumerate(steps):
        rc_path = os.path.join(work, f"rc-{index}")
        rc = open(rc_path).read().strip() if os.path.exists(rc_path) else "not run"
        if command.rstrip().endswith("&"):
            if rc == "died":
                log = open(os.path.join(work, f"bg-{index}.log"), errors="replace").read()
                print(f"readme-test: FAILED {title}\n  $ {original}\n  stopped before it was ready:\n{log}")
                failures += 1
            continue
        actual = open(os.path.join(work, f"out-{index}.txt"), errors="replace").read().splitlines() \
            if os.path.exists(os.path.join(work, f"out-{index}.txt")) else []
        if rc != "0":
            print(f"readme-test: FAILED {title}\n  $ {original}\n  exit {rc}; it printed:")
            print("\n".join("    " + line for line in actual))
            failures += 1
            break
        if not matches(expected, actual):
            print(f"readme-test: FAILED {title}\n  $ {original}\n  README says it prints:")
            print("\n".join("    " + line for line in expected))
            print("  it printed:")
            print("\n".join("    " + line for line in actual))
            failures += 1
    if failures:
        sys.exit(1)
    print(f"readme-test: {len(steps)} commands of {len(walk)} walk-through blocks ran as README.md says")


if __name__ == "__main__":
    main()
