"""Switching from tini without surprises: tini's spellings and variables side by side with
Debian's tini 0.19, a setsid daemon as PID 1 and not, -leftover-grace, and a background job
that must not take the terminal."""
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import LineReader
from peers import reap
from test_supervisor import argv

TINI = shutil.which("tini")
QUIET = {**os.environ, "GRPC_INIT_READY": "false"}


def supervisors(bindir):
    """tini and grpc-init (its gate off: tini has none), each a command prefix."""
    assert TINI, "tini is missing: the test command installs Debian's tini"
    return {"tini": [TINI], "grpc-init": [str(bindir / "grpc-init")]}


def run(prefix, args, env=None, timeout=20):
    return subprocess.run(prefix + args, capture_output=True, text=True, timeout=timeout, env={**QUIET, **(env or {})})


@pytest.mark.parametrize("args,code", [
    (["-vvv", "--", "sh", "-c", "exit 3"], 3),
    (["-sg", "--", "sh", "-c", "exit 3"], 3),
    (["-sgv", "--", "sh", "-c", "exit 143"], 143),
    (["-e143", "--", "sh", "-c", "exit 143"], 0),
    (["-e", "143", "--", "sh", "-c", "exit 143"], 0),
    (["-ve143", "-e", "2", "--", "sh", "-c", "exit 2"], 0),
    (["-pSIGKILL", "--", "sh", "-c", "exit 4"], 4),
    (["-p", "SIGKILL", "-s", "-g", "--", "true"], 0),
    (["-s", "true"], 0),
    (["-x", "--", "true"], 1),
    (["-e", "--", "true"], 1),
    (["-e300", "--", "true"], 1),
])
def test_tinis_short_spellings_as_tini_reads_them(bindir, args, code):
    for name, prefix in supervisors(bindir).items():
        assert run(prefix, args).returncode == code, name


def test_verbosity_counts_and_long_names_keep_gos_syntax(bindir):
    grpc_init = [str(bindir / "grpc-init")]
    assert "[grpc-init] spawned" in run(grpc_init, ["-vvv", "--", "true"]).stderr
    assert run(grpc_init, ["--grace=1s", "-grace", "2s", "--verbose=false", "--", "true"]).stderr == ""
    out = run(grpc_init, ["-vx", "--", "true"])
    assert out.returncode == 1 and out.stderr.splitlines()[0] == "[grpc-init] error: flag provided but not defined: -x"


def group_forwarding(prefix, env):
    """Whether a SIGTERM to the supervisor reaches a process in the child's group other than
    the child: the child (a shell ignoring SIGTERM) waits for it, and exits with its status."""
    child = ["sh", "-c", "sleep 30 & echo $!; trap '' TERM; echo READY; wait $!"]
    proc = subprocess.Popen(prefix + ["--", *child], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env={**QUIET, **env})
    lines = LineReader(proc)
    sleeper = None
    try:
        sleeper = int(lines.next(time.monotonic() + 10))
        assert lines.next(time.monotonic() + 10) == "READY"
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=1.5) == 143
        except subprocess.TimeoutExpired:
            return False
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if sleeper:
            try:
                os.kill(sleeper, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.mark.parametrize("value", ["", "1", "0"])
def test_tini_kill_process_group_set_at_all_turns_it_on(bindir, value):
    """tini turns the feature on when the variable is set, whatever its value (even 0)."""
    for name, prefix in supervisors(bindir).items():
        assert group_forwarding(prefix, {"TINI_KILL_PROCESS_GROUP": value}), name
    assert not group_forwarding([str(bindir / "grpc-init")], {}), "off without it"
    assert not group_forwarding([str(bindir / "grpc-init")], {"TINI_KILL_PROCESS_GROUP": "", "GRPC_INIT_PROCESS_GROUP": "false"}), \
        "GRPC_INIT_PROCESS_GROUP, when set, wins"


def test_tini_subreaper_set_at_all_adopts_orphans(bindir):
    # An orphan (the grandchild) is adopted by the supervisor, not by whoever is above it.
    script = "sh -c 'sleep 2 & echo $!' ; sleep 0.5"
    for name, prefix in supervisors(bindir).items():
        proc = subprocess.Popen(prefix + ["--", "sh", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env={**QUIET, "TINI_SUBREAPER": ""})
        try:
            orphan = int(LineReader(proc).next(time.monotonic() + 10))
            deadline = time.monotonic() + 5
            while True:
                ppid = int(open(f"/proc/{orphan}/stat").read().rsplit(")", 1)[1].split()[1])
                if ppid == proc.pid:
                    break
                assert time.monotonic() < deadline, f"{name}: orphan's parent is {ppid}"
                time.sleep(0.01)  # the intermediate shell's exit; bounded
            # Neither warns that it cannot reap: tini because it is one, grpc-init ever.
            os.set_blocking(proc.stderr.fileno(), False)
            said = proc.stderr.read() or b""
            assert b"not registered as a child subreaper" not in said and (name == "tini" or b"warning" not in said), said
        finally:
            proc.kill()
            proc.wait(timeout=10)


@pytest.mark.parametrize("verbosity,verbose", [("3", True), ("2", True), ("1", False), ("0", False), ("junk", False)])
def test_tini_verbosity(bindir, verbosity, verbose):
    out = run([str(bindir / "grpc-init")], ["--", "true"], env={"TINI_VERBOSITY": verbosity})
    assert ("[grpc-init] spawned" in out.stderr) == verbose
    tini = run([TINI], ["-s", "--", "true"], env={"TINI_VERBOSITY": verbosity})
    assert ("Spawned child process" in tini.stdout + tini.stderr) == verbose, "tini reads it the same way"
    # The grpc-init variable, when set, wins.
    assert run([str(bindir / "grpc-init")], ["--", "true"], env={"TINI_VERBOSITY": "3", "GRPC_INIT_VERBOSE": "false"}).stderr == ""


DAEMON = textwrap.dedent("""
    import os, signal, sys, time
    path = sys.argv[1]
    def record(signo, frame):
        with open(path, "w") as f:
            f.write(signal.Signals(signo).name)
        os._exit(0)
    signal.signal(signal.SIGTERM, record)
    with open(path + ".up", "w") as f:
        f.write(str(os.getpid()))
    time.sleep(30)
""")


@pytest.mark.parametrize("mode", ["pid1", "subreaper"])
def test_a_setsid_daemon_gets_sigterm_only_from_pid_1(bindir, tmp_path, mode):
    record = tmp_path / "signal"
    child = f"setsid {sys.executable} -c '{DAEMON}' {record} </dev/null >/dev/null 2>&1 & while [ ! -e {record}.up ]; do sleep 0.01; done; exit 0"
    out = subprocess.run(argv(bindir, mode, ["-ready=false", "-v", "--", "sh", "-c", child]), capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    if mode == "pid1":
        assert record.read_text() == "SIGTERM"
        assert "sending SIGTERM to every process left in the namespace" in out.stderr
    else:
        assert not record.exists(), "not PID 1: a process outside the child's group is not grpc-init's"
        os.kill(int((tmp_path / "signal.up").read_text()), signal.SIGKILL)


@pytest.mark.parametrize("mode", ["pid1", "subreaper"])
def test_leftover_grace(bindir, mode):
    child = "trap '' TERM; sleep 1000 & exit 0"
    start = time.monotonic()
    out = subprocess.run(argv(bindir, mode, ["-ready=false", "-leftover-grace", "500ms", "--", "sh", "-c", child]),
                         capture_output=True, text=True, timeout=20)
    elapsed = time.monotonic() - start
    assert out.returncode == 0
    assert 0.5 <= elapsed < 1.5, elapsed
    assert "outlived 500ms after SIGTERM; sending SIGKILL" in out.stderr


def test_leftover_grace_errors(bindir):
    out = run([str(bindir / "grpc-init")], ["-leftover-grace", "-1s", "--", "true"])
    assert out.returncode == 1
    assert out.stderr.splitlines()[0] == "[grpc-init] error: -leftover-grace must not be negative (specified: -1s)"
    out = run([str(bindir / "grpc-init")], ["--", "true"], env={"GRPC_INIT_LEFTOVER_GRACE": "soon"})
    assert out.returncode == 1
    assert out.stderr.splitlines()[0].startswith('[grpc-init] error: invalid value "soon" for GRPC_INIT_LEFTOVER_GRACE')


def test_a_background_job_leaves_the_terminal_to_the_shell(bindir, tmp_path):
    """`grpc-init -- sleep 3 &` in an interactive shell: the shell keeps the terminal."""
    pid, master = pty.fork()
    if pid == 0:
        os.execvpe("bash", ["bash", "--norc", "--noprofile", "-i"], {"PATH": os.environ["PATH"], "PS1": "$ ", "GRPC_INIT_READY": "false"})
    try:
        marker = tmp_path / "started"
        os.write(master, f"{bindir / 'grpc-init'} -- sh -c 'echo $$ > {marker}; exec sleep 3' &\n".encode())
        deadline = time.monotonic() + 10
        while not (marker.exists() and marker.read_text().strip()):
            assert time.monotonic() < deadline, "the background job did not start"
            readable, _, _ = select.select([master], [], [], 0.01)  # the terminal kept drained; bounded
            if readable:
                os.read(master, 65536)
        # grpc-init hands the terminal over, when it does, in the child before exec: done by now.
        foreground = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[5])
        assert foreground == pid, f"the terminal's foreground group is {foreground}, not the shell's {pid}"
    finally:
        os.kill(pid, signal.SIGKILL)
        reap(pid, 10, "the interactive shell (SIGKILLed)")
        os.close(master)
        if marker.exists() and marker.read_text().strip():
            try:
                os.kill(int(marker.read_text()), signal.SIGKILL)  # the job's sleep; its grpc-init follows
            except ProcessLookupError:
                pass
