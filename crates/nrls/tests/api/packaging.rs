//! The deployment files in `deploy/` hold what they promise, checked with
//! the real tools where this machine has them: `ldd` on the binary,
//! `systemd-analyze verify` on the unit. No Docker engine runs here, so the
//! Dockerfile is checked for what can be checked without one: its stages,
//! its user, and that the commands it runs exist in this binary.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The binary needs nothing at run time beyond the C library (glibc's libc,
/// libm and loader, and GCC's unwinder libgcc_s, which every glibc system
/// has): no OpenSSL, no libpq, no SQLite library. That is what lets the
/// runtime image be a bare distroless/Debian base (deploy/Dockerfile).
#[test]
fn the_binary_links_only_the_c_library() {
    let output = std::process::Command::new("ldd")
        .arg(env!("CARGO_BIN_EXE_nrls"))
        .output()
        .expect("ldd runs");
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    let allowed = [
        "linux-vdso.so",
        "libc.so",
        "libm.so",
        "libgcc_s.so",
        "ld-linux",
        "libpthread.so",
        "libdl.so",
        "librt.so",
    ];
    let libraries: Vec<&str> = text
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert!(libraries.iter().any(|l| l.starts_with("libc.so")), "{text}");
    for library in libraries {
        let name = library.rsplit('/').next().unwrap_or(library);
        assert!(
            allowed.iter().any(|a| name.starts_with(a)),
            "unexpected runtime dependency {library}:\n{text}"
        );
    }
}

/// `systemd-analyze verify` loads the unit as systemd would (with the
/// binary path pointed at this build) and must report nothing: an unknown
/// key or a bad value is only a warning to systemd, so warnings fail here.
#[test]
fn the_systemd_unit_verifies_without_warnings() {
    let verify = |unit: &str| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nrls.service");
        std::fs::write(&path, unit).unwrap();
        let output = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&path)
            .output()
            .expect("systemd-analyze runs");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let unit = std::fs::read_to_string(repository().join("deploy/nrls.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/nrls serve"));
    let unit = unit.replace("/usr/local/bin/nrls", env!("CARGO_BIN_EXE_nrls"));
    let (ok, warnings) = verify(&unit);
    assert!(ok && warnings.trim().is_empty(), "{warnings}");
    // The check can fail: a misspelt key is reported.
    let (_, warnings) = verify(&unit.replace("NoNewPrivileges=", "NoNewPrivilege="));
    assert!(warnings.contains("NoNewPrivilege"), "{warnings}");
}

/// The Dockerfile: a build stage and a runtime stage, a numeric non-root
/// user, a locked build, and an entrypoint, command and health check that
/// this binary understands.
#[test]
fn the_dockerfile_runs_commands_this_binary_has() {
    let text = std::fs::read_to_string(repository().join("deploy/Dockerfile")).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("FROM ")).count(),
        2,
        "multi-stage"
    );
    let user = lines
        .iter()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    let uid: u32 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("numeric uid");
    assert_ne!(uid, 0, "runs as non-root");
    assert!(text.contains("cargo build --release --locked"));
    assert!(lines.contains(&r#"ENTRYPOINT ["/usr/local/bin/nrls"]"#));
    assert!(lines.contains(&r#"CMD ["serve"]"#));
    // The health check's command line, run here against a closed port:
    // the flags parse (a usage error would exit 2) and the probe fails.
    let health = text
        .split("HEALTHCHECK")
        .nth(1)
        .and_then(|rest| rest.split("CMD [").nth(1))
        .and_then(|rest| rest.split(']').next())
        .expect("a HEALTHCHECK CMD");
    let args: Vec<String> = health
        .split(',')
        .map(|a| a.trim().trim_matches('"').to_owned())
        .skip(1)
        .collect();
    assert_eq!(args[0], "probe", "{args:?}");
    let url_at = args.iter().position(|a| a == "--url").unwrap();
    let mut probe = args.clone();
    probe[url_at + 1] = "http://127.0.0.1:9/livez".into();
    let output = Command::new(env!("CARGO_BIN_EXE_nrls"))
        .args(&probe)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    // The variables it sets are ones the binary reads.
    let help = Command::new(env!("CARGO_BIN_EXE_nrls"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for variable in ["NRLS_LISTEN", "NRLS_DATA_DIR", "NRLS_CONFIG"] {
        assert!(text.contains(variable));
        assert!(help.contains(variable), "serve --help lacks {variable}");
    }
}
