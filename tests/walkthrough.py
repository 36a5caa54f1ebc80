#!/usr/bin/python3
"""walkthrough - run a document's walk-through exactly as it is printed

    walkthrough.py SRCDIR BUILDDIR DOC...

Every command is taken from the Markdown itself, never retyped here.  A
document marks what a reader runs with HTML comments (invisible when the
Markdown is rendered), each placed before the code block it speaks of:

  <!-- walkthrough: start -->       each line of the next code block is a
                                    service, started in a terminal of its
                                    own (in the background) and left running
  <!-- walkthrough: start "CMD" --> start CMD (a command the document shows)
                                    as a service, or again after a stop
  <!-- walkthrough: run -->         the lines of the next code block, in
                                    order, in one shell (the reader's
                                    terminal: `export` and `&` carry over
                                    to the next run block); each must exit 0
  <!-- walkthrough: expect "CMD" exit N -->     ... unless it is said here
  <!-- walkthrough: expect "CMD" prints "TEXT" -->
                                    CMD's output (stdout and stderr) holds
                                    TEXT, within 30 s; "..." in TEXT stands
                                    for any text.  TEXT must be printed in
                                    the document too (outside comments):
                                    the test checks what the reader is told
                                    An expectation met before the block that
                                    runs CMD is checked as soon as CMD ran
  <!-- walkthrough: expect "CMD" omits "TEXT" -->
                                    CMD's output does not hold TEXT once CMD
                                    ended (a follow: once its expectations
                                    are met, before its Ctrl-C); TEXT is
                                    printed in the document too
  <!-- walkthrough: follow "CMD" --> in a run block, CMD does not end by
                                    itself (`tail`): it is left running while
                                    its expectations are checked, then
                                    Ctrl-C'd (it exits 0 or by the signal), and
                                    the block goes on; it runs with what the
                                    block's shell exported
  <!-- walkthrough: stop "CMD" -->  Ctrl-C the service CMD; it exits 0
  <!-- walkthrough: python -->      the next code block is Python, run in one
                                    interpreter per document (a session)
  <!-- walkthrough: expect python prints "TEXT" -->

CMD is a command line as printed, without its trailing `# comment`.  The
broker is the one `./run.sh` starts (run.sh installs and builds, then
`exec broker/heraldd "$@"`): a service `./run.sh ARGS` is `broker/heraldd
ARGS`, the defaults included (ports 5580 and 5581, ./var/herald).  The
caller gives this a network namespace of its own so that those ports are
free.  The documents run in order in one fresh directory laid out as the
top of a built tree (links to the programs, the examples, the package,
.libs), as a newcomer reads them in one checkout: ./var starts empty, and
what one document leaves there is there for the next.  Every process
started is stopped; every wait is bounded.  Exit status: 0 when every document passed, 1 otherwise.
"""

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time

WAIT = 30.0                 # for an expected output
RUN_WAIT = 60.0             # for one command to finish
STOP_WAIT = 30.0            # for a service to exit after Ctrl-C


class Failure(Exception):
    pass


def strip_comment(line):
    """A shell line without its trailing comment (a # after a blank)."""
    out, quote = [], None
    for index, char in enumerate(line):
        if quote:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            break
        out.append(char)
    return "".join(out).strip()


def parse(path):
    """The document's steps: (kind, argument, line number) in order."""
    lines = open(path, encoding="utf-8").read().split("\n")
    visible, steps = [], []
    directive = re.compile(r"^\s*<!--\s*walkthrough:\s*(.*?)\s*-->\s*$")
    index = 0
    while index < len(lines):
        line = lines[index]
        found = directive.match(line)
        if not found:
            if "<!--" not in line:
                visible.append(line)
            index += 1
            continue
        words = shlex.split(found.group(1))
        where = "%s:%d" % (path, index + 1)
        index += 1
        if words in (["start"], ["run"], ["python"]):
            block, index = s_next_block(lines, index, where)
            visible.extend(block)
            if words[0] == "python":
                steps.append(("python", "\n".join(block), where))
            else:
                for text in block:
                    command = strip_comment(text)
                    if command:
                        steps.append((words[0], command, where))
        elif len(words) == 2 and words[0] in ("start", "stop", "follow"):
            steps.append((words[0], words[1], where))
        elif len(words) == 4 and words[0] == "expect" and words[2] == "prints":
            steps.append(("prints", (words[1], words[3]), where))
        elif len(words) == 4 and words[0] == "expect" and words[2] == "omits":
            steps.append(("omits", (words[1], words[3]), where))
        elif len(words) == 4 and words[0] == "expect" and words[2] == "exit":
            steps.append(("exit", (words[1], int(words[3])), where))
        else:
            raise Failure("%s: a directive I do not know: %s" % (where, found.group(1)))
    return steps, "\n".join(visible)


def s_next_block(lines, index, where):
    """The code block after a directive: indented or fenced."""
    while index < len(lines) and not lines[index].strip():
        index += 1
    block = []
    if index < len(lines) and lines[index].lstrip().startswith("```"):
        index += 1
        while index < len(lines) and not lines[index].lstrip().startswith("```"):
            block.append(lines[index])
            index += 1
        return block, index + 1
    while index < len(lines) and (lines[index].startswith("    ") or not lines[index].strip()):
        block.append(lines[index][4:])
        index += 1
    while block and not block[-1].strip():
        block.pop()
    if not block:
        raise Failure("%s: no code block after the directive" % where)
    return block, index


def s_connects(host, port):
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, port)) == 0


def pattern(text):
    return re.compile(".*?".join(re.escape(part) for part in text.split("...")), re.S)


def wait_until(what, check, timeout):
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        if check():
            return
        if time.monotonic() > deadline:
            raise Failure("waited %.0f s for %s" % (timeout, what))
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


class Walk:
    """One document's run: its directory, its terminals, its shell."""

    def __init__(self, doc, srcdir, builddir, logs, tree):
        self.doc = doc
        self.srcdir, self.builddir = srcdir, builddir
        self.tree = tree
        self.logs = logs
        self.services = {}          # command -> Popen (the latest start)
        self.outputs = {}           # command -> log path (the latest)
        self.exits = {}             # command -> expected exit status
        self.follows = set()        # run-block commands that do not end by themselves
        self.pending = {}           # command -> [(text, where)] to check once it ran
        self.omitted = {}           # command -> [(text, where)] it must not print
        self.shell = None
        self.count = 0
        self.python = None
        self.lay_out()

    def lay_out(self):
        """The top of a built tree, with links: examples/orders, tools/herald..."""
        def link(target, name):
            path = os.path.join(self.tree, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if os.path.exists(target):
                os.symlink(target, path)
        if os.path.exists(os.path.join(self.tree, "tools")):
            return                  # laid out by the document before
        for program in ("examples/orders", "examples/inventory", "tools/herald",
                        "broker/heraldd"):
            link(os.path.join(self.builddir, program), program)
        link(os.path.join(self.builddir, ".libs"), ".libs")
        link(os.path.join(self.srcdir, "examples/python"), "examples/python")
        link(os.path.join(self.srcdir, "bindings"), "bindings")

    def log_path(self, what):
        self.count += 1
        name = "%02d-%s.log" % (self.count, re.sub(r"[^A-Za-z0-9.]+", "_", what)[:40])
        return os.path.join(self.logs, name)

    def output(self, command):
        if command == "python":
            # What the last block printed: a session's earlier output
            # must not answer for it
            with open(self.python_log, "rb") as f:
                f.seek(self.python_from)
                return f.read().decode("utf-8", "replace")
        elif command in self.outputs:
            path = self.outputs[command]
        else:
            raise Failure("%r has not been run" % command)
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    # Services: terminals of their own
    def start(self, command, in_shell=False):
        if command in self.services and self.services[command].poll() is None:
            raise Failure("%r is running already" % command)
        argv = ["bash", "-c", command]
        words = shlex.split(command)
        if words[0] == "./run.sh":
            argv = ["broker/heraldd"] + words[1:]
        log = self.log_path(command)
        with open(log, "wb") as out:
            self.services[command] = subprocess.Popen(
                argv, cwd=self.tree, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
                env=self.env_of_shell() if in_shell else self.env())
        self.outputs[command] = log
        if words[0] == "./run.sh":
            # The reader goes on once the broker is up: its api port answers
            api = "tcp://127.0.0.1:5580"
            if "--api" in words[:-1]:
                api = words[words.index("--api") + 1]
            host, port = api.rsplit("/", 1)[-1].rsplit(":", 1)
            proc = self.services[command]
            wait_until("the broker to listen on %s" % api,
                       lambda: proc.poll() is not None or s_connects(host, int(port)), WAIT)
            if proc.poll() is not None:
                raise Failure("the broker exited %d:\n%s" % (proc.returncode,
                                                             self.output(command)))

    def stop(self, command, ok=(0,)):
        proc = self.services.get(command)
        if not proc or proc.poll() is not None:
            raise Failure("%r is not running" % command)
        os.killpg(proc.pid, signal.SIGINT)          # Ctrl-C in its terminal
        try:
            status = proc.wait(STOP_WAIT)
        except subprocess.TimeoutExpired:
            raise Failure("%r did not exit %.0f s after Ctrl-C" % (command, STOP_WAIT))
        if status not in ok:
            raise Failure("%r exited %d after Ctrl-C:\n%s" % (command, status,
                                                              self.output(command)))

    # The reader's shell: one bash for every run block
    def run(self, command, where):
        if self.shell is None:
            self.shell = subprocess.Popen(["bash"], cwd=self.tree, stdin=subprocess.PIPE,
                                          stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL,
                                          start_new_session=True, env=self.env())
            if os.environ.get("WALKTHROUGH_PRELOAD"):
                # curl with ASan preloaded never returns (not even from a
                # closed port): the reader's curl runs without it
                self.shell.stdin.write(b'curl () { LD_PRELOAD= command curl "$@"; }\n')
        log = self.log_path(command)
        status = log + ".status"
        self.outputs[command] = log
        # The shell's environment after each command (its `export`s), for
        # the follows, which the reader types in this terminal
        self.shell_env = os.path.join(self.logs, "shell-env")
        script = "{ %s\n} >%s 2>&1 </dev/null; echo $? >%s.new; env -0 >%s; mv %s.new %s\n" % (
            command, shlex.quote(log), shlex.quote(status), shlex.quote(self.shell_env),
            shlex.quote(status), shlex.quote(status))
        self.shell.stdin.write(script.encode())
        self.shell.stdin.flush()
        wait_until("%r to finish" % command, lambda: os.path.exists(status), RUN_WAIT)
        with open(status) as f:
            rc = int(f.read())
        expected = self.exits.get(command, 0)
        if rc != expected:
            raise Failure("%s: %r exited %d, not %d:\n%s" % (where, command, rc, expected,
                                                            self.output(command)))

    def python_block(self, code, where):
        if self.python is None:
            self.python_log = self.log_path("python")
            self.python_out = open(self.python_log, "wb")
            # A session: each block is a compiled statement list, sent as
            # one frame (its length, then the source) and run in one
            # namespace; "ok N" or the traceback is what comes back
            server = ("import sys, traceback\n"
                      "ns = {'__name__': '__main__'}\n"
                      "control = sys.stdin.buffer\n"
                      "answer = open(int(sys.argv[1]), 'w', buffering=1)\n"
                      "while True:\n"
                      "    head = control.readline()\n"
                      "    if not head: break\n"
                      "    source = control.read(int(head)).decode()\n"
                      "    try:\n"
                      "        exec(compile(source, 'block', 'exec'), ns)\n"
                      "        sys.stdout.flush(); answer.write('ok\\n')\n"
                      "    except BaseException:\n"
                      "        traceback.print_exc(); sys.stdout.flush(); sys.stderr.flush()\n"
                      "        answer.write('failed\\n')\n")
            read_end, write_end = os.pipe()
            self.python_answers = os.fdopen(read_end, "r")
            self.python = subprocess.Popen(
                ["/usr/bin/python3", "-u", "-c", server, str(write_end)], cwd=self.tree,
                stdin=subprocess.PIPE, stdout=self.python_out, stderr=subprocess.STDOUT,
                pass_fds=(write_end,), start_new_session=True, env=self.env(python=True))
            os.close(write_end)
        source = code.encode()
        self.python_from = os.path.getsize(self.python_log)
        self.python.stdin.write(b"%d\n" % len(source) + source)
        self.python.stdin.flush()
        import select
        ready, _, _ = select.select([self.python_answers], [], [], RUN_WAIT)
        if not ready:
            raise Failure("%s: the Python block did not finish in %.0f s" % (where, RUN_WAIT))
        answer = self.python_answers.readline().strip()
        if answer != "ok":
            raise Failure("%s: the Python block failed:\n%s" % (where, self.output("python")))

    def env(self, python=False):
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1")
        # What a reader's fresh terminal has: none of the test's settings
        for name in ("PYTHONPATH", "HERALD_BUILDDIR", "HERALD_LIB"):
            env.pop(name, None)
        if os.environ.get("WALKTHROUGH_PRELOAD"):      # ASan, for a sanitized libherald
            env["LD_PRELOAD"] = os.environ["WALKTHROUGH_PRELOAD"]
        if python:
            env["PYTHONPATH"] = os.path.join(self.tree, "bindings/python")
            env["HERALD_BUILDDIR"] = self.tree
        return env

    def env_of_shell(self):
        """The reader's shell's environment, as its last command left it."""
        if self.shell is None:
            return self.env()
        with open(self.shell_env, "rb") as f:
            pairs = (item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item)
            return {os.fsdecode(k): os.fsdecode(v) for k, v in pairs}

    def expect(self, command, text, visible, where):
        flat = " ".join(visible.split())
        if not all(" ".join(part.split()) in flat for part in text.split("...")):
            raise Failure("%s: %r is not printed in the document: the test may only check "
                          "what the reader is told" % (where, text))
        wanted = pattern(text)
        try:
            wait_until("%r in the output of %r" % (text, command),
                       lambda: wanted.search(self.output(command)), WAIT)
        except Failure as failure:
            raise Failure("%s: %s; it printed:\n%s" % (where, failure, self.output(command)))

    def omits(self, command, text, visible, where):
        flat = " ".join(visible.split())
        if " ".join(text.split()) not in flat:
            raise Failure("%s: %r is not printed in the document: the test may only check "
                          "what the reader is told" % (where, text))
        if pattern(text).search(self.output(command)):
            raise Failure("%s: %r printed %r, which it must not:\n%s"
                          % (where, command, text, self.output(command)))

    def close(self):
        """Stop everything still running, as a reader closing terminals."""
        procs = [proc for proc in self.services.values() if proc.poll() is None]
        for proc in (self.shell, self.python):
            if proc and proc.poll() is None:
                proc.stdin.close()
                procs.append(proc)
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for proc in procs:
            try:
                proc.wait(STOP_WAIT)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        # The shell's background jobs (`cmd &`) are in its process group
        if self.shell:
            try:
                os.killpg(self.shell.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.python:
            self.python_out.close()
            self.python_answers.close()


def walk(doc, srcdir, builddir, logs, tree):
    steps, visible = parse(os.path.join(srcdir, doc))
    if not steps:
        raise Failure("%s marks no command to run" % doc)
    shown = "\n".join(strip_comment(line) for line in visible.split("\n"))
    walk = Walk(doc, srcdir, builddir, logs, tree)
    try:
        for kind, arg, where in steps:
            print("  %s %s" % (kind, arg if kind != "python" else "(block at %s)" % where),
                  flush=True)
            if kind in ("start", "stop", "follow"):
                # A service named in a directive is a command the document shows
                if arg not in shown and ("`%s`" % arg) not in visible:
                    raise Failure("%s: %r is not a command the document shows" % (where, arg))
            if kind == "start":
                walk.start(arg)
            elif kind == "stop":
                walk.stop(arg)
            elif kind == "follow":
                walk.follows.add(arg)
            elif kind == "run" and arg in walk.follows:
                walk.start(arg, in_shell=True)
                for text, at in walk.pending.pop(arg, []):
                    walk.expect(arg, text, visible, at)
                for text, at in walk.omitted.pop(arg, []):
                    walk.omits(arg, text, visible, at)
                # Ctrl-C ends it: by a clean exit or by the signal
                walk.stop(arg, ok=(0, 130, -signal.SIGINT))
            elif kind == "run":
                walk.run(arg, where)
                for text, at in walk.pending.pop(arg, []):
                    walk.expect(arg, text, visible, at)
                for text, at in walk.omitted.pop(arg, []):
                    walk.omits(arg, text, visible, at)
            elif kind == "python":
                walk.python_block(arg, where)
            elif kind == "exit":
                walk.exits[arg[0]] = arg[1]
            elif kind == "prints" and arg[0] not in walk.outputs and arg[0] != "python":
                walk.pending.setdefault(arg[0], []).append((arg[1], where))
            elif kind == "prints":
                walk.expect(arg[0], arg[1], visible, where)
            elif kind == "omits" and arg[0] not in walk.outputs:
                walk.omitted.setdefault(arg[0], []).append((arg[1], where))
            elif kind == "omits":
                walk.omits(arg[0], arg[1], visible, where)
        if walk.pending or walk.omitted:
            raise Failure("expected, but never run: %s"
                          % ", ".join(set(walk.pending) | set(walk.omitted)))
    finally:
        walk.close()


def main():
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        return 64
    srcdir, builddir = (os.path.abspath(path) for path in sys.argv[1:3])
    logs = tempfile.mkdtemp(prefix="walkthrough-logs-")
    # One tree for every document, in order, as a newcomer who reads the
    # README, then the examples, then the Python pages, in one checkout:
    # what one walk-through leaves (var/herald, state directories) is there
    # for the next
    tree = tempfile.mkdtemp(prefix="walkthrough-")
    failed = 0
    for doc in sys.argv[3:]:
        print("%s:" % doc, flush=True)
        started = time.monotonic()
        try:
            walk(doc, srcdir, builddir, logs, tree)
            print("PASS: %s (%.1f s)" % (doc, time.monotonic() - started), flush=True)
        except Failure as failure:
            print("FAIL: %s: %s" % (doc, failure), flush=True)
            failed += 1
    subprocess.run(["rm", "-rf", tree])
    if failed:
        print("logs of every command: %s" % logs)
    else:
        subprocess.run(["rm", "-rf", logs])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
