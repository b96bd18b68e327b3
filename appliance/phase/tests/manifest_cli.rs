//! `phase manifest keygen|sign|verify` on real files: each refusal is named, exit 1.

use std::path::Path;
use std::process::Command;

fn phase(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_phase")).args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn sign_then_verify_and_every_tampering_is_refused_with_its_reason() {
    let dir = std::env::temp_dir().join(format!("phase-manifest-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let p = |n: &str| dir.join(n).to_str().unwrap().to_string();
    std::fs::write(p("kernel"), vec![7u8; 4096]).unwrap();
    std::fs::write(p("initramfs"), vec![9u8; 1000]).unwrap();
    let (code, out, _) = phase(&["manifest", "keygen", "--out", &p("pub.key")]);
    assert_eq!(code, 0);
    let publisher = out.split_whitespace().next().unwrap().to_string();
    let (code, _, err) = phase(&["manifest", "keygen", "--out", &p("pub.key")]);
    assert_eq!(code, 1, "never overwrites a key");
    assert!(err.contains("refusing to overwrite"), "{err}");
    let (code, out, err) = phase(&[
        "manifest", "sign", "--key", &p("pub.key"), "--channel", "stable", "--arch", "x86_64", "--version", "5",
        "--kernel", &p("kernel"), "--initramfs", &p("initramfs"), "--cmdline", "phase.mode=local", "--out", &p("m.json"),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("version 5"));
    let verify = |extra: &[&str]| {
        let m = p("m.json");
        let mut args = vec!["manifest", "verify", m.as_str(), "--trust", publisher.as_str()];
        if !extra.contains(&"--arch") {
            args.extend(["--arch", "x86_64"]);
        }
        args.extend_from_slice(extra);
        let (code, out, err) = phase(&args);
        (code, out + &err)
    };
    let (code, text) = verify(&["--kernel", &p("kernel"), "--initramfs", &p("initramfs"), "--floor", "5"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.starts_with("ok: stable x86_64 version 5"));
    for (extra, reason) in [
        (vec!["--floor", "6"], "rollback: version 5 is below the floor 6"),
        (vec!["--arch", "arm64"], "wrong arch"),
        (vec!["--kernel", &p("initramfs")], "kernel size mismatch"),
    ] {
        let (code, text) = verify(&extra);
        assert_eq!(code, 1);
        assert!(text.contains(reason), "{text}");
    }
    // A tampered kernel of the right size.
    let mut k = std::fs::read(p("kernel")).unwrap();
    k[100] ^= 1;
    std::fs::write(p("evil-kernel"), &k).unwrap();
    let (code, text) = verify(&["--kernel", &p("evil-kernel")]);
    assert_eq!((code, text.contains("kernel hash mismatch")), (1, true), "{text}");
    // A manifest edited after signing (an extra init=/bin/sh) fails its signature.
    let json = std::fs::read_to_string(p("m.json")).unwrap();
    std::fs::write(p("m.json"), json.replace("phase.mode=local", "phase.mode=local init=/bin/sh")).unwrap();
    let (code, text) = verify(&[]);
    assert_eq!((code, text.contains("bad signature")), (1, true), "{text}");
    // An untrusted signer.
    std::fs::write(p("m.json"), &json).unwrap();
    let (_, other, _) = phase(&["manifest", "keygen", "--out", &p("other.key")]);
    let other = other.split_whitespace().next().unwrap();
    let (code, _, err) = phase(&["manifest", "verify", &p("m.json"), "--trust", other]);
    assert_eq!((code, err.contains("unknown publisher key")), (1, true), "{err}");
    assert!(Path::new(&p("pub.key")).exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
