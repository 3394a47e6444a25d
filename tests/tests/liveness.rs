//! The jail must stay useful: shells, pipes, threads, children, a compiler
//! and the workspace all keep working (as root and as nobody).
#![allow(clippy::unwrap_used)]
use aiops_tests::*;
use std::time::Duration;

/// The README's example: `hi`, then `id`, exit 0.
#[test]
fn echo_hi_and_id() {
    each_mode(&attacks(), |m| {
        let o = m.jail().run_sh("echo hi; id");
        o.assert_ran().assert_code(0);
        assert!(o.stdout.starts_with("hi\n"), "{}", o.describe());
        assert!(o.stdout.contains("uid="), "{}", o.describe());
        let r = o.assert_report();
        assert_eq!(r["exit"]["code"], 0, "{}", o.describe());
        assert_eq!(r["profile"], "restrictive", "{}", o.describe());
        let layers = r["exit"]["layers"].as_array().cloned().unwrap_or_default();
        assert!(!layers.is_empty(), "no layers reported\n{}", o.describe());
    });
}

/// Exit codes pass through, and a missing command is 127.
#[test]
fn exit_codes_pass_through() {
    each_mode(&attacks(), |m| {
        m.jail().run_sh("exit 42").assert_ran().assert_code(42);
        let o = m.jail().run_argv(&["/nonexistent/aiops-cmd".into()]);
        o.assert_code(127);
    });
}

#[test]
fn pipes_and_child_processes() {
    each_mode(&attacks(), |m| {
        let o = m.jail().run_sh(
            "echo 'b a c' | tr ' ' '\\n' | sort | tr -d '\\n'; echo; \
             (sleep 0.1; echo child) & sh -c 'echo grandchild'; wait; seq 1 200 | xargs -n 10 echo | wc -l",
        );
        o.assert_ran().assert_code(0);
        let lines: Vec<&str> = o.stdout.lines().collect();
        assert_eq!(lines.first(), Some(&"abc"), "{}", o.describe());
        assert!(
            o.stdout.contains("child") && o.stdout.contains("grandchild"),
            "{}",
            o.describe()
        );
        assert_eq!(
            lines.last().map(|l| l.trim()),
            Some("20"),
            "{}",
            o.describe()
        );
    });
}

#[test]
fn python_threads() {
    if !have_python("python_threads") {
        return;
    }
    let code = r#"
import threading
out = []
ts = [threading.Thread(target=lambda i=i: out.append(i * i)) for i in range(16)]
[t.start() for t in ts]; [t.join() for t in ts]
print("PROBE threads ok %d" % sum(out))
"#;
    each_mode(&attacks(), |m| {
        let o = m.jail().run_py(code, &[]);
        o.assert_ran().assert_code(0);
        assert_eq!(o.probe_value("threads"), "ok 1240", "{}", o.describe());
    });
}

/// A C compiler builds and runs a program from the workspace.
#[test]
fn c_compiler() {
    if !have_program("c_compiler", "/usr/bin/cc") {
        return;
    }
    each_mode(&attacks(), |m| {
        let j = m.jail();
        host_file(
            &j.ws().join("hello.c"),
            "#include <stdio.h>\nint main(void){puts(\"hello from cc\");return 0;}\n",
            j.ws_owner(),
        );
        let o = j.run_sh("cc -o hello hello.c && ./hello");
        o.assert_ran().assert_code(0);
        assert!(o.stdout.contains("hello from cc"), "{}", o.describe());
    });
}

/// `--cwd` inside the workspace is honoured.
#[test]
fn cwd_inside_workspace() {
    each_mode(&attacks(), |m| {
        let j = m.jail();
        let sub = j.ws().join("sub");
        std::fs::create_dir(&sub).unwrap();
        chown_to(&sub, j.ws_owner());
        let o = j.cwd(&sub).run_sh("pwd; echo x > here");
        o.assert_ran().assert_code(0);
        assert_eq!(o.stdout.trim(), sub.to_str().unwrap(), "{}", o.describe());
        assert!(sub.join("here").exists());
    });
}

/// stdin reaches the node, its stdout and stderr come back untouched, and
/// the JSON report is the last stderr line, after the node's own.
#[test]
fn stdio_passes_through_and_report_is_last() {
    each_mode(&attacks(), |m| {
        let o = m
            .jail()
            .stdin(b"line one\nline two\n")
            .run_sh("tr a-z A-Z; echo to-stderr >&2");
        o.assert_ran().assert_code(0);
        assert_eq!(o.stdout, "LINE ONE\nLINE TWO", "{}", o.describe());
        assert!(
            o.stderr.trim_end().ends_with("to-stderr"),
            "{}",
            o.describe()
        );
        let r = o.assert_report();
        assert_eq!(r["exit"]["stdout_bytes"], 18 + 16, "{}", o.describe());
    });
}

/// Far below the restrictive profile's 64 MiB output cap: what can be in
/// flight when the reader leaves (the node's pipe, agentd's chunk, the
/// consumer's pipe) is a few MiB at most.
const FAR_BELOW_CAP: u64 = 8 << 20;

/// A closed stdout reaches the node (agentd's pump): `aiopsctl exec -- yes
/// | head -2` stops at once and the node dies of SIGPIPE (141), as in a
/// shell pipeline; not the output cap (123) after pumping 64 MiB into
/// nothing. Controls: `yes | head -2` on the host, and under `unconfined`.
#[test]
fn closed_stdout_reader_kills_yes_with_sigpipe() {
    let mut modes = vec![Mode::Host];
    modes.extend(all_modes());
    each_mode(&modes, |m| {
        let o = m
            .jail()
            .timeout("60s")
            .pipe_into("head -2")
            .run_argv(&["/usr/bin/yes".into()]);
        assert!(
            o.elapsed < Duration::from_secs(5),
            "slow: {:?}\n{}",
            o.elapsed,
            o.describe()
        );
        assert_eq!(o.stdout, "y\ny\nPIPESTATUS 141", "{}", o.describe());
        if m == Mode::Host {
            return;
        }
        let r = o.assert_report();
        assert_eq!(
            r["exit"]["signal"],
            13,
            "killed by SIGPIPE\n{}",
            o.describe()
        );
        assert_eq!(r["exit"]["output_capped"], false, "{}", o.describe());
        assert_eq!(
            r["exit"]["reader_closed"],
            serde_json::json!(["stdout"]),
            "{}",
            o.describe()
        );
        let bytes = r["exit"]["stdout_bytes"].as_u64().unwrap();
        assert!(
            (4..FAR_BELOW_CAP).contains(&bytes),
            "stdout_bytes {bytes}\n{}",
            o.describe()
        );
    });
}

/// `find /usr | head -1` stops after the first name instead of walking all
/// of /usr (find gets SIGPIPE on its next flush; the shell reports 141).
#[test]
fn closed_stdout_reader_stops_find() {
    let mut modes = vec![Mode::Host];
    modes.extend(all_modes());
    each_mode(&modes, |m| {
        let o = m.jail().timeout("60s").pipe_into("head -1").run_argv(&[
            "/bin/sh".into(),
            "-c".into(),
            "find /usr".into(),
        ]);
        assert!(
            o.elapsed < Duration::from_secs(5),
            "slow: {:?}\n{}",
            o.elapsed,
            o.describe()
        );
        assert_eq!(o.stdout, "/usr\nPIPESTATUS 141", "{}", o.describe());
        if m == Mode::Host {
            return;
        }
        let r = o.assert_report();
        // sh may exec find (killed by SIGPIPE) or wait for it (exit 141).
        let died_of_sigpipe = r["exit"]["signal"] == 13 || r["exit"]["code"] == 141;
        assert!(died_of_sigpipe, "{}", o.describe());
        assert_eq!(r["exit"]["output_capped"], false, "{}", o.describe());
        assert_eq!(
            r["exit"]["reader_closed"],
            serde_json::json!(["stdout"]),
            "{}",
            o.describe()
        );
        let bytes = r["exit"]["stdout_bytes"].as_u64().unwrap();
        assert!(
            bytes < FAR_BELOW_CAP,
            "stdout_bytes {bytes}\n{}",
            o.describe()
        );
    });
}
