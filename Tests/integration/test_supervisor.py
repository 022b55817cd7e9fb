"""grpc-init as PID 1 (in a PID namespace) and as a plain parent (child subreaper)."""
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import PEERS, LineReader
from peers import read_to_end

MODES = ["subreaper", "pid1"]


def argv(bindir, mode, args):
    prefix = ["unshare", "--pid", "--fork", "--mount-proc"] if mode == "pid1" else []
    return prefix + [str(bindir / "grpc-init"), *args]


def run(bindir, mode, args, timeout=30, env=None):
    start = time.monotonic()
    out = subprocess.run(argv(bindir, mode, args), capture_output=True, text=True, timeout=timeout, env=env)
    out.elapsed = time.monotonic() - start
    return out


def supervisor_pid(proc, mode):
    """grpc-init's pid as seen from here: under unshare --fork it is unshare's only child."""
    return proc.pid if mode == "subreaper" else child_pid(proc.pid)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("code", [0, 1, 2, 32, 64, 127, 254, 255])
def test_exit_status_passes_through(bindir, mode, code):
    assert run(bindir, mode, ["--", "sh", "-c", f"exit {code}"]).returncode == code


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("sig", ["TERM", "HUP", "QUIT", "KILL", "USR1"])
def test_killed_child_gives_128_plus_n(bindir, mode, sig):
    signo = getattr(signal, "SIG" + sig)
    assert run(bindir, mode, ["sh", "-c", f"kill -{sig} $$"]).returncode == 128 + signo


def forwardable():
    skip = {signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD}
    return [s for s in range(1, 32) if s not in skip] + [signal.SIGRTMIN + 1, signal.SIGRTMAX]


@pytest.mark.parametrize("mode", MODES)
def test_every_forwardable_signal_reaches_the_child(bindir, mode):
    proc = subprocess.Popen(argv(bindir, mode, ["--", sys.executable, str(PEERS / "signal_reporter.py")]),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    lines = LineReader(proc)
    try:
        assert lines.next(time.monotonic() + 20).startswith("READY ")
        target = supervisor_pid(proc, mode)
        for signo in forwardable():
            os.kill(target, signo)
            assert lines.next(time.monotonic() + 10) == f"GOT {signo}", f"signal {signo}"
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)
    assert proc.returncode == 0


@pytest.mark.parametrize("mode", MODES)
def test_burst_of_orphans_leaves_no_zombie(bindir, mode):
    """Each orphan is adopted by grpc-init (as PID 1, or as subreaper) and none is left a zombie."""
    out = run(bindir, mode, ["--", sys.executable, str(PEERS / "orphans.py"), "200"])
    assert (out.returncode, out.stdout) == (0, "ADOPTED 200\nZOMBIES 0\n"), out.stderr


def test_process_group_flag_takes_a_pipeline_down(bindir):
    proc = subprocess.Popen([str(bindir / "grpc-init"), "-g", "-v", "--", "sh", "-c", "sleep 1000 | sleep 1000"],
                            stderr=subprocess.PIPE, text=True)
    # Wait until both sleeps run in the child's group.
    deadline = time.monotonic() + 10
    members = []
    while time.monotonic() < deadline and len(members) < 3:
        members = group_members(child_pid(proc.pid))
        time.sleep(0.01)
    assert len(members) == 3, members
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 128 + signal.SIGTERM
    assert group_members(members[0][1]) == []  # before reading: a member left would hold stderr open
    _, stderr = proc.communicate(timeout=10)
    assert "forwarding SIGTERM to process group" in stderr


@pytest.mark.parametrize("group", [True, False], ids=["-g", "no -g"])
def test_a_signal_reaches_the_group_only_with_g(bindir, group):
    """The child and a process it started, both in the child's group, report signals. With -g a
    forwarded signal reaches both; without it only the child: a USR2 sent to the other process
    afterwards is the first signal it reports."""
    proc = subprocess.Popen([str(bindir / "grpc-init"), *(["-g"] if group else []), "--", sys.executable,
                             str(PEERS / "group_reporter.py")], stdout=subprocess.PIPE)
    lines = LineReader(proc)
    try:
        ready = lines.next(time.monotonic() + 20).split()
        assert ready[0] == "READY", ready
        other = int(ready[2])
        os.kill(proc.pid, signal.SIGUSR1)
        seen = {lines.next(time.monotonic() + 5) for _ in range(2 if group else 1)}
        assert seen == ({f"GOT child {signal.SIGUSR1}", f"GOT other {signal.SIGUSR1}"} if group else {f"GOT child {signal.SIGUSR1}"})
        if not group:
            os.kill(other, signal.SIGUSR2)
            assert lines.next(time.monotonic() + 5) == f"GOT other {signal.SIGUSR2}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def child_pid(pid):
    """The first child of `pid`, once it has one (bounded wait)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = f.read().split()
        if children:
            return int(children[0])
        time.sleep(0.005)
    raise TimeoutError(f"process {pid} started no child")


def group_members(pgid):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                found.append((int(entry), pgid))
    return found


def test_remap_exit_code(bindir):
    assert run(bindir, "subreaper", ["-e", "143", "--", "sh", "-c", "kill -TERM $$"]).returncode == 0
    assert run(bindir, "subreaper", ["-e", "143", "--", "sh", "-c", "exit 3"]).returncode == 3
    env = dict(os.environ, GRPC_INIT_REMAP_EXIT="3,143")
    assert run(bindir, "subreaper", ["sh", "-c", "exit 3"], env=env).returncode == 0


def test_environment_values_are_checked(bindir):
    env = dict(os.environ, GRPC_INIT_GRACE="soon")
    out = run(bindir, "subreaper", ["true"], env=env)
    assert out.returncode == 1
    assert out.stderr.splitlines()[0] == '[grpc-init] error: invalid value "soon" for GRPC_INIT_GRACE: parse error'


def test_missing_and_unexecutable_commands(bindir, tmp_path):
    out = run(bindir, "subreaper", ["no-such-command-xyz"])
    assert out.returncode == 127
    assert out.stderr == "[grpc-init] error: cannot run no-such-command-xyz: No such file or directory\n"
    script = tmp_path / "not-executable"
    script.write_text("#!/bin/sh\n")
    out = run(bindir, "subreaper", [str(script)])
    assert out.returncode == 126
    assert out.stderr == f"[grpc-init] error: cannot run {script}: Permission denied\n"


def test_no_command_prints_usage(bindir):
    out = run(bindir, "subreaper", [])
    assert out.returncode == 1
    assert "Usage: grpc-init [flags] [--] COMMAND [ARGS...]" in out.stderr


def test_grace_kills_a_child_that_ignores_sigterm(bindir):
    proc = subprocess.Popen([str(bindir / "grpc-init"), "--grace", "500ms", "--", "sh", "-c",
                             "trap '' TERM; echo READY; while :; do sleep 0.05; done"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert LineReader(proc).next(time.monotonic() + 10) == "READY"
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 128 + signal.SIGKILL
    elapsed = time.monotonic() - start
    assert 0.5 <= elapsed < 1.5, elapsed
    assert b"sending SIGKILL" in read_to_end(proc.stderr, 10, "grpc-init's stderr")


def test_leftovers_in_the_group_are_terminated(bindir):
    out = run(bindir, "subreaper", ["-v", "--", "sh", "-c", "sleep 1000 & echo $!; exit 3"])
    assert out.returncode == 3
    assert out.elapsed < 2.0
    assert "sending SIGTERM to processes left in process group" in out.stderr
    assert not os.path.exists(f"/proc/{out.stdout.strip()}")


def test_leftovers_ignoring_sigterm_are_killed_after_the_delay(bindir):
    # The ignored SIGTERM is inherited by the background sleep before the shell exits.
    out = run(bindir, "subreaper", ["--", "sh", "-c", "trap '' TERM; sleep 1000 & echo $!; exit 0"])
    assert out.returncode == 0
    assert 2.0 <= out.elapsed < 4.0, out.elapsed
    assert "outlived 2s after SIGTERM; sending SIGKILL" in out.stderr
    assert "still present" not in out.stderr
    assert not os.path.exists(f"/proc/{out.stdout.strip()}"), "killed and reaped, not left a zombie"


def test_child_gets_the_terminal_foreground(bindir):
    check = f"{sys.executable} -c 'import os; print(\"FOREGROUND\", os.tcgetpgrp(0) == os.getpgrp() != os.getsid(0))'"
    out = subprocess.run(["script", "-qfec", f"{bindir / 'grpc-init'} -- {check}", "/dev/null"],
                         capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
    assert "FOREGROUND True" in out.stdout, out


def test_help_is_not_an_error(bindir):
    out = run(bindir, "subreaper", ["-h"])
    assert out.returncode == 0
    assert out.stdout.startswith("Usage: grpc-init [flags] [--] COMMAND [ARGS...]")


def test_parent_death_signal_is_forwarded(bindir):
    # The shell becomes `sleep` (exec), so grpc-init's parent is a process this test can kill.
    parent = subprocess.Popen(["sh", "-c", f"{bindir / 'grpc-init'} -p SIGTERM -v -- sleep 1000 & echo $!; exec sleep 1000"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    supervisor = int(LineReader(parent).next(time.monotonic() + 10))
    child = child_pid(supervisor)
    exited = os.pidfd_open(supervisor)
    parent.kill()
    parent.wait(timeout=10)
    ready, _, _ = select.select([exited], [], [], 10)
    os.close(exited)
    assert ready, "grpc-init got SIGTERM when its parent died, and exited"
    assert not os.path.exists(f"/proc/{child}"), "and forwarded it to its child"
    _, stderr = parent.communicate(timeout=10)
    assert b"forwarding SIGTERM" in stderr


def test_warn_reaped_names_each_adopted_zombie(bindir):
    out = run(bindir, "subreaper", ["-w", "--", sys.executable, str(PEERS / "orphans.py"), "3"])
    assert (out.returncode, out.stdout) == (0, "ADOPTED 3\nZOMBIES 0\n")
    warnings = [l for l in out.stderr.splitlines() if l.startswith("[grpc-init] warning: reaped zombie pid ")]
    assert len(warnings) >= 3, out.stderr


def verbose_reporter(bindir, mode, log_fd):
    """grpc-init -v supervising the signal reporter, its log on `log_fd` (closed here); returns the
    process, a reader of the reporter's lines, and the pid to signal, once the reporter runs."""
    # No readiness gate: its lines would be counted with the dropped ones.
    proc = subprocess.Popen(argv(bindir, mode, ["-v", "-ready=false", "--", sys.executable, str(PEERS / "signal_reporter.py")]),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_fd)
    os.close(log_fd)
    lines = LineReader(proc)
    assert lines.next(time.monotonic() + 20).startswith("READY ")
    return proc, lines, supervisor_pid(proc, mode)


@pytest.mark.parametrize("mode", MODES)
def test_a_closed_log_neither_loops_nor_sends_the_child_sigpipe(bindir, mode):
    """With -v, every forwarded signal is logged; once nobody reads stderr, that write raises a
    SIGPIPE in grpc-init itself, which is not a signal for the child (forwarding it, and logging
    that, looped)."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the log's reader is gone before grpc-init writes a line
    proc, lines, target = verbose_reporter(bindir, mode, write_end)
    try:
        for signo in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP):
            os.kill(target, signo)
            assert lines.next(time.monotonic() + 10) == f"GOT {signo}", "no SIGPIPE reaches the child in between"
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)
    assert proc.returncode == 0


def full_pipe():
    """A pipe whose buffer is full and that nobody reads: any blocking write to it blocks."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    try:
        while True:
            os.write(write_end, b"x" * 4096)
    except BlockingIOError:
        pass
    os.set_blocking(write_end, True)
    return read_end, write_end


def drain(fd):
    os.set_blocking(fd, False)
    data = b""
    try:
        while chunk := os.read(fd, 1 << 16):
            data += chunk
    except BlockingIOError:
        pass
    return data


@pytest.mark.parametrize("mode", MODES)
def test_a_stalled_log_neither_delays_forwarding_nor_loses_the_count(bindir, mode):
    """stderr is a pipe nobody reads, already full: with -v, grpc-init still forwards each
    signal at once; the lines it could not write are counted, and the count comes first once
    the log is read again."""
    read_end, write_end = full_pipe()
    proc, lines, target = verbose_reporter(bindir, mode, write_end)
    try:
        for signo in (signal.SIGUSR1, signal.SIGHUP):
            os.kill(target, signo)
            assert lines.next(time.monotonic() + 5) == f"GOT {signo}"
        drain(read_end)
        os.kill(target, signal.SIGUSR2)
        assert lines.next(time.monotonic() + 5) == f"GOT {signal.SIGUSR2}"
        deadline = time.monotonic() + 5
        log = b""
        while b"forwarding SIGUSR2" not in log:
            assert time.monotonic() < deadline, log
            select.select([read_end], [], [], 0.1)
            log += drain(read_end)
        # "spawned" and "forwarding SIGUSR1" could not be written, and "forwarding SIGHUP" either,
        # unless grpc-init wrote it after the drain (it logs after forwarding).
        first = log.decode().splitlines()[0]
        assert first in ("[grpc-init] warning: 2 log lines dropped: stderr was not being read",
                         "[grpc-init] warning: 3 log lines dropped: stderr was not being read"), log
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)
        os.close(read_end)
    assert proc.returncode == 0


@pytest.mark.parametrize("case", ["grace", "leftovers", "socket"])
def test_a_stalled_log_does_not_stop_the_stop(bindir, case):
    """With stderr full (a pipe, or a socket nobody reads), -grace still ends a child that
    ignores SIGTERM, and leftovers of its group are still killed."""
    if case == "socket":
        import socket
        reader, writer = socket.socketpair()
        writer.setblocking(False)
        try:
            while True:
                writer.send(b"x" * 4096)
        except BlockingIOError:
            pass
        writer.setblocking(True)
        read_end, write_end = reader.detach(), writer.detach()
    else:
        read_end, write_end = full_pipe()
    if case == "leftovers":
        args = ["-v", "--", "sh", "-c", "sh -c 'trap \"\" TERM; while :; do sleep 0.05; done' & echo READY; exit 3"]
    else:
        args = ["-v", "--grace", "300ms", "--", "sh", "-c", "trap '' TERM; echo READY; while :; do sleep 0.05; done"]
    proc = subprocess.Popen([str(bindir / "grpc-init"), *args], stdout=subprocess.PIPE, stderr=write_end)
    os.close(write_end)
    try:
        assert LineReader(proc).next(time.monotonic() + 10) == "READY"
        if case != "leftovers":
            proc.send_signal(signal.SIGTERM)
        expected = 3 if case == "leftovers" else 128 + signal.SIGKILL
        assert proc.wait(timeout=10) == expected
    finally:
        kill_tree(proc.pid)
        proc.wait(timeout=10)
        os.close(read_end)


def kill_tree(pid):
    """SIGKILL to `pid` and every descendant, so that a failed test leaves nothing running."""
    try:
        os.kill(pid, signal.SIGSTOP)  # no new children while the tree is walked
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except (ProcessLookupError, FileNotFoundError):
        return
    for child in children:
        kill_tree(int(child))
    os.kill(pid, signal.SIGKILL)


def test_arguments_reach_the_child_byte_for_byte(bindir, tmp_path):
    out = subprocess.run([str(bindir / "grpc-init"), "--", "printf", "%s|%s", b"a\xe9b", b"\xff\xfe"], capture_output=True, timeout=10)
    assert (out.returncode, out.stdout) == (0, b"a\xe9b|\xff\xfe")
    script = tmp_path / "run\xff".encode("latin-1").decode("utf-8", "surrogateescape")
    script.write_text("#!/bin/sh\necho ran \"$1\"\n")
    script.chmod(0o755)
    out = subprocess.run([str(bindir / "grpc-init"), "--", bytes(script), b"\xe9"], capture_output=True, timeout=10)
    assert (out.returncode, out.stdout) == (0, b"ran \xe9\n"), out.stderr


def test_empty_variables_count_as_unset(bindir):
    names = ["VERBOSE", "GRACE", "REMAP_EXIT", "PARENT_DEATH_SIGNAL", "PROCESS_GROUP", "WARN_REAPED", "SUBREAPER",
             "READY_ADDR", "READY_SERVICE", "READY_INTERVAL", "READY_FILE"]
    env = dict(os.environ, **{f"GRPC_INIT_{n}": "" for n in names})
    out = run(bindir, "subreaper", ["--", "sh", "-c", "exit 7"], env=env)
    assert (out.returncode, out.stderr) == (7, "")


@pytest.mark.parametrize("variable,value,message", [
    ("GRPC_INIT_GRACE", "-1s", "GRPC_INIT_GRACE must not be negative (specified: -1s)"),
    ("GRPC_INIT_PARENT_DEATH_SIGNAL", "SIGFOO", 'invalid signal "SIGFOO" for GRPC_INIT_PARENT_DEATH_SIGNAL'),
    ("GRPC_INIT_READY_TIMEOUT", "-1s", "GRPC_INIT_READY_TIMEOUT must not be negative (specified: -1s)"),
    ("GRPC_INIT_READY_ADDR", "unix:", "invalid GRPC_INIT_READY_ADDR: "),
])
def test_an_invalid_variable_is_named_in_its_message(bindir, variable, value, message):
    out = run(bindir, "subreaper", ["true"], env=dict(os.environ, **{variable: value}))
    assert out.returncode == 1
    assert out.stderr.splitlines()[0].startswith("[grpc-init] error: " + message), out.stderr


def test_the_same_value_given_as_a_flag_is_named_as_the_flag(bindir):
    out = run(bindir, "subreaper", ["-grace", "-2s", "true"], env=dict(os.environ, GRPC_INIT_GRACE="-1s"))
    assert out.stderr.splitlines()[0] == "[grpc-init] error: -grace must not be negative (specified: -2s)"


def test_the_c_librarys_reserved_signals_do_not_end_grpc_init(bindir):
    """Signals 32 and 33 cannot be forwarded (the C library keeps them); as a plain parent,
    grpc-init ignores them instead of dying of them and orphaning the child."""
    proc = subprocess.Popen([str(bindir / "grpc-init"), "--", sys.executable, str(PEERS / "signal_reporter.py")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    lines = LineReader(proc)
    try:
        assert lines.next(time.monotonic() + 20).startswith("READY ")
        for signo in (32, 33):
            os.kill(proc.pid, signo)
        os.kill(proc.pid, signal.SIGUSR1)
        assert lines.next(time.monotonic() + 5) == f"GOT {signal.SIGUSR1}"
        assert proc.poll() is None
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)
    assert proc.returncode == 0


def wakeups(pid):
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(fields["voluntary_ctxt_switches"]) + int(fields["nonvoluntary_ctxt_switches"])


def test_an_idle_supervisor_never_wakes_and_stays_small(bindir):
    """Once idle (waiting in poll with no timeout), nothing wakes grpc-init, and its resident set
    is under 1 MiB (start-up code and the data only read released; 3.5 MiB without that), however
    much of the binary the page cache holds: this copy is all in it, the larger case. The health agent
    looks for a listener that never comes, and reports nothing new: that wakes nobody."""
    from test_readiness import await_idle_forever
    proc = subprocess.Popen([str(bindir / "grpc-init"), "--", "sleep", "1000"])
    try:
        assert await_idle_forever(proc.pid)
        before = wakeups(proc.pid)
        # A bounded observation window: nothing can be awaited that should not happen.
        time.sleep(2)
        assert wakeups(proc.pid) == before
        rss = int(Path(f"/proc/{proc.pid}/status").read_text().split("VmRSS:")[1].split()[0])
        assert rss < 1024, f"{rss} KiB"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_an_orphan_storm_does_not_fault_the_code_back_in_each_time(bindir):
    """Each wake-up used to release the code pages, and the next one faulted them back: about a
    dozen page faults per orphan. Now the pages are released once things have settled."""
    orphans = 2000
    script = f"i=0; while [ $i -lt {orphans} ]; do (true &); i=$((i+1)); done; echo DONE; read x"
    proc = subprocess.Popen([str(bindir / "grpc-init"), "--", "sh", "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert LineReader(proc).next(time.monotonic() + 60) == "DONE"
        deadline = time.monotonic() + 10
        from test_readiness import children, command_of
        while len([c for c in children(proc.pid) if command_of(c) != "grpc-init-agent"]) > 1:
            assert time.monotonic() < deadline, "orphans left unreaped"
            time.sleep(0.01)
        faults = int(Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[7])
        assert faults < orphans / 2, faults
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)
