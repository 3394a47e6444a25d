//! Python probe snippets: each prints `PROBE <name> <result>` where the
//! result is `ok [detail]`, an errno name (`EPERM`), or `EXC:<Type>`.

/// Prepended to every python probe.
pub const PRELUDE: &str = r#"
import ctypes, errno, os, platform, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
# Syscall numbers without a libc wrapper (asm/unistd_64.h, asm-generic/unistd.h).
NR = {
    "x86_64": dict(add_key=248, keyctl=250, bpf=321, perf_event_open=298,
                   io_uring_setup=425, userfaultfd=323, personality=135,
                   openat2=437, memfd_secret=447),
    "aarch64": dict(add_key=217, keyctl=219, bpf=280, perf_event_open=241,
                    io_uring_setup=425, userfaultfd=282, personality=92,
                    openat2=437, memfd_secret=447),
}[platform.machine()]

def err(e):
    return errno.errorcode.get(e, "E%d" % e)

def check(rc):
    if rc == -1:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return rc

def sc(name, *args):
    return check(libc.syscall(ctypes.c_long(NR[name]), *[ctypes.c_long(a) if isinstance(a, int) else a for a in args]))

def probe(name, f):
    try:
        r = f()
        out = "ok" if r is None else "ok %s" % (r,)
    except TimeoutError:
        out = "ETIMEDOUT"
    except OSError as e:
        out = err(e.errno) if e.errno is not None else "EXC:OSError"
    except Exception as e:
        out = "EXC:%s" % type(e).__name__
    print("PROBE %s %s" % (name, out), flush=True)
"#;
