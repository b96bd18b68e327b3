//! Boot stores, the artifact provider and the fetching side, with real `phase node`
//! providers on loopback: HTTP semantics (HEAD, ranges, ETag, aliases, caps, no path outside
//! the store), and the fetcher's verification, resume and failover against faulty providers.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{run_phase, Node};
use phase::boot::netboot::{self, Plan};
use phase_core::boot::manifest::{Arch, ManifestError};

struct Lab {
    dir: PathBuf,
}

impl Lab {
    fn new(name: &str) -> Lab {
        let dir = std::env::temp_dir().join(format!("phase-boot-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // Artifacts with content that differs everywhere, so a flipped byte or a spliced resume shows.
        let kernel: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
        let initramfs: Vec<u8> = (0..1_200_001u32).map(|i| (i.wrapping_mul(40503) >> 7) as u8).collect();
        std::fs::write(dir.join("bzImage"), kernel).unwrap();
        std::fs::write(dir.join("initramfs.cpio.zst"), initramfs).unwrap();
        Lab { dir }
    }
    fn p(&self, n: &str) -> String {
        self.dir.join(n).to_str().unwrap().to_string()
    }
    fn key(&self, name: &str) -> String {
        let (code, out) = run_phase(&["manifest", "keygen", "--out", &self.p(name)]);
        assert_eq!(code, 0, "{out}");
        out.split_whitespace().next().unwrap().to_string()
    }
    fn publish(&self, key: &str, store: &str, version: u64, extra: &[&str]) -> String {
        let v = version.to_string();
        let mut args = vec![
            "publish", "--key", key, "--arch", "x86_64", "--version", &v, "--kernel", "K", "--initramfs", "I",
            "--cmdline", "console=ttyS0", "--store", store,
        ];
        let (k, i) = (self.p("bzImage"), self.p("initramfs.cpio.zst"));
        args[8] = &k;
        args[10] = &i;
        args.extend_from_slice(extra);
        let (code, out) = run_phase(&args);
        assert_eq!(code, 0, "{out}");
        out
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One raw request with extra headers; returns status, headers (lowercase names) and body.
fn raw(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for (k, v) in headers {
        req += &format!("{k}: {v}\r\n");
    }
    s.write_all((req + "\r\n").as_bytes()).unwrap();
    let mut out = vec![];
    let _ = s.read_to_end(&mut out);
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").expect("head");
    let head = String::from_utf8_lossy(&out[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let hs = lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())).collect();
    (status, hs, out[split + 4..].to_vec())
}

fn h<'a>(hs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    hs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[test]
fn provider_serves_the_store_with_ranges_etags_aliases_and_nothing_else() {
    let lab = Lab::new("serve");
    let publisher = lab.key("pub.key");
    let store = lab.p("store");
    let out = lab.publish(&lab.p("pub.key"), &store, 7, &[]);
    assert!(out.contains("published stable/x86_64 version 7"), "{out}");
    let kernel = std::fs::read(lab.p("bzImage")).unwrap();
    let node = Node::start(&["--boot-store", &store, "--trust", &publisher]);
    let a = node.addr;

    let (st, _, body) = raw(a, "GET", "/v1/boot", &[]);
    let index = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(st, 200);
    assert!(index.contains("\"channel\":\"stable\"") && index.contains("\"version\":7"), "{index}");

    let (st, _, body) = raw(a, "GET", "/v1/boot/stable/x86_64/manifest.json", &[]);
    assert_eq!(st, 200);
    assert_eq!(body, std::fs::read_to_string(lab.dir.join("store/stable/x86_64/manifest.json")).unwrap().trim().as_bytes());

    // Whole artifact, by its alias too, byte for byte, with ETag = SHA-256.
    let etag = format!("\"{}\"", phase_core::encoding::hex_encode(&phase_core::sha256(&kernel)));
    for arch in ["x86_64", "amd64"] {
        let (st, hs, body) = raw(a, "GET", &format!("/v1/boot/stable/{arch}/bzImage"), &[]);
        assert_eq!(st, 200);
        assert!(body == kernel, "the served kernel is the published one");
        assert_eq!(h(&hs, "etag"), Some(etag.as_str()));
        assert_eq!(h(&hs, "accept-ranges"), Some("bytes"));
    }
    // HEAD: the size and ETag, no body.
    let (st, hs, body) = raw(a, "HEAD", "/v1/boot/stable/x86_64/bzImage", &[]);
    assert_eq!((st, body.len()), (200, 0));
    assert_eq!(h(&hs, "content-length"), Some("3000000"));
    // Ranges: middle, open-ended, suffix; unsatisfiable.
    let (st, hs, body) = raw(a, "GET", "/v1/boot/stable/x86_64/bzImage", &[("Range", "bytes=1000-1999")]);
    assert_eq!(st, 206);
    assert_eq!(body, &kernel[1000..2000]);
    assert_eq!(h(&hs, "content-range"), Some("bytes 1000-1999/3000000"));
    let (_, _, body) = raw(a, "GET", "/v1/boot/stable/x86_64/bzImage", &[("Range", "bytes=2999990-")]);
    assert_eq!(body, &kernel[2_999_990..]);
    let (_, _, body) = raw(a, "GET", "/v1/boot/stable/x86_64/bzImage", &[("Range", "bytes=-5")]);
    assert_eq!(body, &kernel[2_999_995..]);
    let (st, hs, _) = raw(a, "GET", "/v1/boot/stable/x86_64/bzImage", &[("Range", "bytes=3000000-")]);
    assert_eq!(st, 416);
    assert_eq!(h(&hs, "content-range"), Some("bytes */3000000"));
    // A client holding the artifact is told so.
    let (st, _, body) = raw(a, "GET", "/v1/boot/stable/x86_64/bzImage", &[("If-None-Match", &etag)]);
    assert_eq!((st, body.len()), (304, 0));
    // Nothing but the store's three files; no other methods.
    for path in [
        "/v1/boot/stable/x86_64/../../../etc/passwd",
        "/v1/boot/stable/x86_64/%2e%2e/node.key",
        "/v1/boot/stable/x86_64/",
        "/v1/boot/stable/aarch64/bzImage",
        "/v1/boot/edge/x86_64/bzImage",
        "/v1/boot/stable/riscv64/bzImage",
        "/v1/boot/stable/x86_64/bzImage/x",
    ] {
        let (st, _, _) = raw(a, "GET", path, &[]);
        assert_eq!(st, 404, "{path}");
    }
    let (st, _, _) = raw(a, "POST", "/v1/boot/stable/x86_64/bzImage", &[]);
    assert_eq!(st, 405);
    // Two whole kernels, 1000 + 10 + 5 bytes of ranges; HEAD, 304 and 416 send no body.
    let metrics = node.request("GET", "/metrics", b"").text();
    assert!(metrics.contains(&format!("phase_boot_served_bytes_total {}", 2 * 3_000_000 + 1015)), "{metrics}");
}

#[test]
fn a_store_that_does_not_match_its_manifest_or_trust_is_refused_at_start() {
    let lab = Lab::new("refuse");
    let publisher = lab.key("pub.key");
    let other = lab.key("other.key");
    let store = lab.p("store");
    lab.publish(&lab.p("pub.key"), &store, 1, &[]);
    let err = Node::start_expect_failure(&["--boot-store", &store, "--trust", &other]);
    assert!(err.contains("unknown publisher key"), "{err}");
    // A flipped byte on disk after publishing.
    let path = lab.dir.join("store/stable/x86_64/bzImage");
    let mut k = std::fs::read(&path).unwrap();
    k[12345] ^= 1;
    std::fs::write(&path, k).unwrap();
    let err = Node::start_expect_failure(&["--boot-store", &store, "--trust", &publisher]);
    assert!(err.contains("SHA-256 differs from the manifest"), "{err}");
}

#[test]
fn downloads_beyond_the_cap_get_503_and_retry_after() {
    let lab = Lab::new("cap");
    let publisher = lab.key("pub.key");
    // Large enough that an unread response fills the socket buffers and holds its slot.
    let big: Vec<u8> = (0..48_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(lab.dir.join("bzImage"), big).unwrap();
    let store = lab.p("store");
    lab.publish(&lab.p("pub.key"), &store, 1, &[]);
    let node = Node::start(&["--boot-store", &store, "--trust", &publisher, "--max-downloads", "1"]);
    let mut slow = TcpStream::connect(node.addr).unwrap();
    slow.write_all(b"GET /v1/boot/stable/x86_64/bzImage HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut first = [0u8; 12];
    slow.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    let (st, hs, _) = raw(node.addr, "GET", "/v1/boot/stable/x86_64/initramfs.cpio.zst", &[]);
    assert_eq!(st, 503);
    assert_eq!(h(&hs, "retry-after"), Some("1"));
    // The job API stays up meanwhile; and once the slow download is gone the slot is free.
    assert_eq!(node.request("GET", "/health", b"").status, 200);
    drop(slow);
    let mut ok = false;
    for _ in 0..50 {
        if raw(node.addr, "HEAD", "/v1/boot/stable/x86_64/initramfs.cpio.zst", &[]).0 == 200 {
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(ok, "the slot is released after the client left");
}

fn plan(trusted: &[&str]) -> Plan {
    Plan {
        channel: "stable".into(),
        arch: Arch::X86_64,
        trusted: trusted.iter().map(|k| phase_core::encoding::hex_decode_array(k).unwrap()).collect(),
        floors: Default::default(),
        clock: phase::clock::unix_now(),
    }
}

/// A deadline for exchanges with honest providers on loopback.
fn soon() -> std::time::Instant {
    std::time::Instant::now() + Duration::from_secs(60)
}

fn url(n: &Node) -> String {
    format!("http://{}", n.addr)
}

#[test]
fn fetcher_refuses_bad_providers_with_their_reason_and_resumes_a_broken_download() {
    let lab = Lab::new("fetch");
    let publisher = lab.key("pub.key");
    lab.key("stranger.key");
    let (good, unknown, expired) = (lab.p("good"), lab.p("unknown"), lab.p("expired"));
    lab.publish(&lab.p("pub.key"), &good, 4, &[]);
    lab.publish(&lab.p("stranger.key"), &unknown, 9, &[]);
    lab.publish(&lab.p("pub.key"), &expired, 9, &["--created-at", "1790000000", "--expires-at", "1790086400"]);
    let tampering = Node::start(&["--boot-store", &good, "--fault", "boot-tamper"]);
    let dropping = Node::start(&["--boot-store", &good, "--fault", "boot-drop-halfway"]);
    let unknown_node = Node::start(&["--boot-store", &unknown]);
    let expired_node = Node::start(&["--boot-store", &expired]);
    let plan = plan(&[&publisher]);

    match netboot::fetch_manifest(&url(&unknown_node), &plan, soon()) {
        Err(netboot::NetbootError::Manifest { reason: ManifestError::UnknownKey { .. }, .. }) => {}
        other => panic!("unknown key accepted: {:?}", other.map(|m| m.0.body.version)),
    }
    match netboot::fetch_manifest(&url(&expired_node), &plan, soon()) {
        Err(netboot::NetbootError::Manifest { reason: ManifestError::Expired { .. }, .. }) => {}
        other => panic!("expired accepted: {:?}", other.map(|m| m.0.body.version)),
    }
    let mut rollback = plan.clone();
    rollback.floors.version = 5;
    match netboot::fetch_manifest(&url(&dropping), &rollback, soon()) {
        Err(e) => assert!(e.to_string().contains("rollback: version 4 is below the floor 5"), "{e}"),
        Ok(_) => panic!("rollback accepted"),
    }
    // The tampered kernel is refused by hash; nothing from it is used.
    let (m, _) = netboot::fetch_manifest(&url(&tampering), &plan, soon()).unwrap();
    match netboot::fetch_artifacts(&url(&tampering), &m, &mut |_, _, _| {}, soon()) {
        Err(e) => assert!(e.to_string().contains("SHA-256"), "{e}"),
        Ok(_) => panic!("tampered kernel accepted"),
    }
    // A round over all of them: refusals are skipped, the connection that breaks halfway
    // through every artifact is resumed by range, and the release is the signed one.
    let candidates: Vec<String> = [&unknown_node, &expired_node, &tampering, &dropping].iter().map(|n| url(n)).collect();
    let f = netboot::try_providers(&candidates, &mut plan.clone(), soon()).expect("a verifiable release");
    assert_eq!(f.from, url(&dropping));
    assert_eq!(f.release.manifest.body.version, 4);
    assert!(f.release.kernel == std::fs::read(lab.p("bzImage")).unwrap());
    assert!(f.release.initramfs == std::fs::read(lab.p("initramfs.cpio.zst")).unwrap());
    // No provider at all within the deadline: a named error, not a hang.
    let err = netboot::find_release(&["http://127.0.0.1:9".into()], &mut |_| Vec::new(), &mut plan.clone(), Duration::from_secs(1)).err().unwrap().to_string();
    assert!(err.contains("no provider served a verifiable stable/x86_64 release"), "{err}");
}

#[test]
fn the_carrying_initrd_holds_a_store_that_opens_and_verifies() {
    let lab = Lab::new("carry");
    let publisher = lab.key("pub.key");
    let out = lab.publish(&lab.p("pub.key"), &lab.p("store"), 3, &["--carry", &lab.p("initrd"), "--trust", &publisher]);
    assert!(out.contains("carrying initrd"), "{out}");
    let initrd = std::fs::read(lab.p("initrd")).unwrap();
    let initramfs = std::fs::read(lab.p("initramfs.cpio.zst")).unwrap();
    assert!(initrd.starts_with(&initramfs), "the initramfs comes first, unchanged");
    let carried = &initrd[(initramfs.len() + 3) / 4 * 4..];
    assert!(carried.starts_with(b"070701"), "a cpio newc archive at the next 4-byte boundary");
    // Unpack it as the kernel would and open it as a store.
    let root = lab.dir.join("unpacked");
    std::fs::create_dir_all(&root).unwrap();
    unpack_newc(carried, &root);
    let trusted = [phase_core::encoding::hex_decode_array(&publisher).unwrap()];
    let store = phase::boot::store::BootStore::open(&root.join("boot/phase"), Some(&trusted)).unwrap();
    assert_eq!(store.entries.len(), 1);
    assert_eq!(store.entries[0].manifest.body.version, 3);
    // The key the initrd was told to trust is in the image's trust directory, as PID 1 reads it.
    let keys = phase::boot::read_trust_dir(&root.join("etc/phase/trust")).unwrap();
    assert_eq!(keys, trusted);
}

#[test]
fn a_release_with_a_drivers_archive_is_served_fetched_verified_and_carried_on() {
    let lab = Lab::new("drivers");
    let publisher = lab.key("pub.key");
    let drivers: Vec<u8> = (0..300_003u32).map(|i| (i.wrapping_mul(97) >> 3) as u8).collect();
    std::fs::write(lab.p("drivers.cpio.zst"), &drivers).unwrap();
    let store = lab.p("store");
    lab.publish(&lab.p("pub.key"), &store, 6, &["--drivers", &lab.p("drivers.cpio.zst")]);
    let manifest = std::fs::read_to_string(lab.dir.join("store/stable/x86_64/manifest.json")).unwrap();
    assert!(manifest.contains("\"drivers\":{\"name\":\"drivers.cpio.zst\""), "{manifest}");
    let (code, out) = run_phase(&["manifest", "verify", &lab.dir.join("store/stable/x86_64/manifest.json").to_string_lossy(), "--trust", &publisher,
        "--arch", "x86_64", "--drivers", &lab.p("drivers.cpio.zst")]);
    assert_eq!(code, 0, "{out}");
    std::fs::write(lab.p("other.cpio.zst"), b"not the signed drivers").unwrap();
    let (code, out) = run_phase(&["manifest", "verify", &lab.dir.join("store/stable/x86_64/manifest.json").to_string_lossy(), "--trust", &publisher,
        "--arch", "x86_64", "--drivers", &lab.p("other.cpio.zst")]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("drivers size mismatch"), "{out}");

    // Served and fetched with the kernel and initramfs; a provider that tampers is refused.
    let node = Node::start(&["--boot-store", &store]);
    let plan = plan(&[&publisher]);
    let f = netboot::try_providers(&[url(&node)], &mut plan.clone(), soon()).expect("a verifiable release");
    assert!(f.release.drivers.as_deref() == Some(&drivers[..]), "the signed drivers archive");
    let (status, _, body) = raw(node.addr, "GET", "/v1/boot/stable/x86_64/drivers.cpio.zst", &[]);
    assert_eq!((status, body.len()), (200, drivers.len()));

    // The next initrd: initramfs, drivers archive, then the carried store with all three files.
    let initramfs = f.release.initramfs.clone();
    let image = netboot::BootImage::carrying(f.release, &plan.trusted, &[], String::new()).unwrap();
    assert!(image.initrd.starts_with(&initramfs), "the initramfs comes first, unchanged");
    let at = initramfs.len().next_multiple_of(4);
    assert!(image.initrd[initramfs.len()..at].iter().all(|&b| b == 0), "zeros up to the 4-byte boundary");
    assert!(image.initrd[at..].starts_with(&drivers), "then the drivers archive, unchanged");
    let carried = &image.initrd[(at + drivers.len()).next_multiple_of(4)..];
    let root = lab.dir.join("unpacked");
    std::fs::create_dir_all(&root).unwrap();
    unpack_newc(carried, &root);
    let opened = phase::boot::store::BootStore::open(&root.join("boot/phase"), Some(&plan.trusted)).unwrap();
    let release = phase::boot::release::Release::read(&opened.entries[0]).unwrap();
    assert!(release.drivers.as_deref() == Some(&drivers[..]), "the hop carries the drivers on");

    // A store whose drivers file was changed does not open.
    std::fs::write(lab.dir.join("store/stable/x86_64/drivers.cpio.zst"), b"changed").unwrap();
    let err = phase::boot::store::BootStore::open(Path::new(&store), Some(&plan.trusted)).err().expect("a changed drivers archive is refused").to_string();
    assert!(err.contains("drivers"), "{err}");
}

/// A minimal newc reader for the test (the kernel is the real consumer).
fn unpack_newc(mut data: &[u8], root: &Path) {
    let field = |h: &[u8], i: usize| u32::from_str_radix(std::str::from_utf8(&h[6 + i * 8..14 + i * 8]).unwrap(), 16).unwrap() as usize;
    loop {
        assert!(data.starts_with(b"070701"));
        let (mode, size, namesize) = (field(data, 1), field(data, 6), field(data, 11));
        let name = std::str::from_utf8(&data[110..110 + namesize - 1]).unwrap().to_string();
        let data_at = (110 + namesize + 3) / 4 * 4;
        if name == "TRAILER!!!" {
            break;
        }
        let path = root.join(&name);
        if mode & 0o170000 == 0o040000 {
            std::fs::create_dir_all(&path).unwrap();
        } else {
            std::fs::write(&path, &data[data_at..data_at + size]).unwrap();
        }
        data = &data[(data_at + size + 3) / 4 * 4..];
    }
}

#[test]
fn a_provider_beyond_the_lan_is_found_through_the_dht() {
    let lab = Lab::new("dht");
    let publisher = lab.key("pub.key");
    let store = lab.p("store");
    lab.publish(&lab.p("pub.key"), &store, 2, &[]);
    // hub <- provider, hub <- seeker: the seeker never hears of the provider but through the
    // DHT (no mDNS), then asks it over HTTP for the manifest.
    let hub = Node::start(&["--p2p", "/ip4/127.0.0.1/tcp/0"]);
    let hub_addr = p2p_addr(&hub);
    let provider = Node::start(&["--boot-store", &store, "--trust", &publisher, "--p2p", "/ip4/127.0.0.1/tcp/0", "--bootstrap", &hub_addr]);
    let seeker = Node::start(&["--p2p", "/ip4/127.0.0.1/tcp/0", "--bootstrap", &hub_addr]);
    let want = format!("http://{}", provider.addr);
    let mut last = String::new();
    for _ in 0..60 {
        let r = seeker.request("GET", "/v1/boot/providers?channel=stable&arch=amd64", b"");
        last = r.text();
        if r.status == 200 && last.contains(&want) {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(last.contains(&want), "the provider's URL was not found: {last}");
    // Through its DHT provider record, not only its identify announcement.
    let mut by_dht = last.contains("\"dht\"");
    for _ in 0..40 {
        if by_dht {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
        by_dht = seeker.request("GET", "/v1/boot/providers?channel=stable&arch=amd64", b"").text().contains("\"dht\"");
    }
    assert!(by_dht, "no DHT provider record for the release: {last}");
    let plan = plan(&[&publisher]);
    let (m, _) = netboot::fetch_manifest(&want, &plan, soon()).expect("the discovered provider serves a verifiable manifest");
    assert_eq!(m.body.version, 2);
    // The hub serves nothing and is not listed; bad queries are named.
    assert!(!last.contains(&format!("http://{}", hub.addr)), "{last}");
    assert_eq!(seeker.request("GET", "/v1/boot/providers?arch=riscv", b"").status, 400);
    assert_eq!(seeker.request("GET", "/v1/boot/providers?channel=../x", b"").status, 400);
}

/// The node's first p2p listen address (with its /p2p/ id), from GET /v1/status.
fn p2p_addr(n: &Node) -> String {
    use miniserde::json::Value;
    let status = n.request("GET", "/v1/status", b"").text();
    match common::json_field(&status, "p2p") {
        Value::Object(m) => match m.get("listen") {
            Some(Value::Array(a)) => match a.first() {
                Some(Value::String(s)) => s.clone(),
                _ => panic!("no listen address: {status}"),
            },
            _ => panic!("no listen list: {status}"),
        },
        _ => panic!("no p2p in status: {status}"),
    }
}

/// A provider that answers every connection by trickling: with `head`, the head of a valid
/// manifest answer and then its body a byte a second; without, the head itself a byte a second.
/// Each byte arrives well within any per-read timeout.
fn trickling_provider(head: bool) -> (String, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let t = std::thread::spawn(move || {
        listener.set_nonblocking(false).unwrap();
        for conn in listener.incoming().take(8) {
            let Ok(mut c) = conn else { return };
            std::thread::spawn(move || {
                let mut req = [0u8; 4096];
                let _ = c.read(&mut req);
                let slow: Vec<u8> = if head {
                    let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 60000\r\n\r\n");
                    b"{".repeat(60000)
                } else {
                    b"HTTP/1.1 200 OK\r\nX-Slow: ".iter().copied().chain(std::iter::repeat_n(b'a', 60000)).collect()
                };
                for b in slow {
                    if c.write_all(&[b]).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            });
        }
    });
    (url, t)
}

#[test]
fn a_provider_that_trickles_cannot_hold_a_netboot_past_its_deadline() {
    let plan = plan(&["00".repeat(32).as_str()]);
    for head in [false, true] {
        let (url, _server) = trickling_provider(head);
        let started = std::time::Instant::now();
        let err = netboot::find_release(&[url.clone()], &mut |_| Vec::new(), &mut plan.clone(), Duration::from_secs(4)).err().expect("no release").to_string();
        let took = started.elapsed();
        assert!(err.contains("within 4s"), "{err}");
        assert!(took < Duration::from_secs(7), "a trickling {} held the search for {took:?}", if head { "body" } else { "head" });
        // One provider alone is bounded too (MANIFEST_TIME), well before a long search ends.
        let started = std::time::Instant::now();
        let one = netboot::fetch_manifest(&url, &plan, std::time::Instant::now() + Duration::from_secs(2));
        assert!(matches!(one, Err(netboot::NetbootError::Fetch(phase::boot::fetch::FetchError::Timeout { .. }))), "{:?}", one.err());
        assert!(started.elapsed() < Duration::from_secs(4));
    }
}

#[test]
fn downloaders_that_stop_reading_lose_their_slots() {
    let lab = Lab::new("stuck");
    let publisher = lab.key("pub.key");
    // Large enough that an unread response fills the socket buffers.
    let big: Vec<u8> = (0..24_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(lab.dir.join("bzImage"), &big).unwrap();
    let store = lab.p("store");
    lab.publish(&lab.p("pub.key"), &store, 1, &[]);
    let node = Node::start(&["--boot-store", &store, "--trust", &publisher]);
    let started = std::time::Instant::now();
    // Four downloads (the default cap) that read the head and then nothing.
    let stuck: Vec<common::Raw> = (0..4)
        .map(|_| {
            let mut c = common::Raw::connect(node.addr);
            c.small_receive_buffer();
            c.send(b"GET /v1/boot/stable/x86_64/bzImage HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut first = [0u8; 12];
            c.stream.read_exact(&mut first).unwrap();
            assert_eq!(&first, b"HTTP/1.1 200");
            c
        })
        .collect();
    let (st, hs, _) = raw(node.addr, "HEAD", "/v1/boot/stable/x86_64/bzImage", &[]);
    assert_eq!((st, h(&hs, "retry-after")), (503, Some("1")), "every slot is held");
    // Their writes stall, so the node drops them, and an honest download gets the whole file.
    let mut got = None;
    while started.elapsed() < Duration::from_secs(40) {
        let (st, _, body) = raw(node.addr, "GET", "/v1/boot/stable/x86_64/bzImage", &[]);
        if st == 200 {
            got = Some(body);
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(got.as_ref() == Some(&big), "no honest download within 40 s of four stuck ones");
    assert!(started.elapsed() >= Duration::from_secs(8), "cut too soon: {:?}", started.elapsed());
    drop(stuck);
}

#[test]
fn a_corrupt_newest_release_never_makes_a_node_boot_an_older_one() {
    let lab = Lab::new("downgrade");
    let publisher = lab.key("pub.key");
    let (new, old) = (lab.p("new"), lab.p("old"));
    lab.publish(&lab.p("pub.key"), &new, 5, &[]);
    lab.publish(&lab.p("pub.key"), &old, 4, &[]);
    // The newest release's bytes are corrupt on its only provider; an older one is intact.
    let corrupt = Node::start(&["--boot-store", &new, "--fault", "boot-tamper"]);
    let older = Node::start(&["--boot-store", &old]);
    let mut plan = plan(&[&publisher]);
    let err = netboot::find_release(&[url(&corrupt), url(&older)], &mut |_| Vec::new(), &mut plan, Duration::from_secs(5)).err().expect("must not boot version 4").to_string();
    assert!(err.contains("of version 5 or later"), "{err}");
    assert_eq!(plan.floors.version, 5, "verifying version 5 raised the floor");
    // Once the newest can be had, it is what boots.
    let good = Node::start(&["--boot-store", &new]);
    let f = netboot::find_release(&[url(&older), url(&good)], &mut |_| Vec::new(), &mut plan, Duration::from_secs(20)).expect("version 5");
    assert_eq!((f.release.manifest.body.version, f.floors.version), (5, 5));
    // A floor given on the command line refuses older releases by name.
    let mut floored = plan.clone();
    floored.floors.version = 6;
    match netboot::fetch_manifest(&url(&good), &floored, soon()) {
        Err(e) => assert!(e.to_string().contains("rollback: version 5 is below the floor 6"), "{e}"),
        Ok(_) => panic!("a release below the floor was accepted"),
    }
}

#[test]
fn a_machine_whose_clock_is_behind_its_time_floor_judges_expiry_at_the_floor() {
    let lab = Lab::new("clock");
    let publisher = lab.key("pub.key");
    let store = lab.p("store");
    // Expired on 2026-11-12: after the fixed floor older builds used (2026-11-07), before this
    // machine's time floor.
    lab.publish(&lab.p("pub.key"), &store, 1, &["--created-at", "1793000000", "--expires-at", "1794450000"]);
    let node = Node::start(&["--boot-store", &store]);
    let mut clockless = plan(&[&publisher]);
    clockless.clock = 0;
    clockless.floors.time = 1_795_000_000;
    match netboot::fetch_manifest(&url(&node), &clockless, soon()) {
        Err(netboot::NetbootError::Manifest { reason: ManifestError::Expired { now, .. }, .. }) => assert_eq!(now, 1_795_000_000),
        other => panic!("an expired manifest was accepted: {:?}", other.map(|m| m.0.body.version)),
    }
}

#[test]
fn a_node_with_a_data_dir_never_serves_a_release_older_than_one_it_served() {
    let lab = Lab::new("floors");
    let publisher = lab.key("pub.key");
    let (v5, v4, data) = (lab.p("v5"), lab.p("v4"), lab.p("data"));
    lab.publish(&lab.p("pub.key"), &v5, 5, &[]);
    lab.publish(&lab.p("pub.key"), &v4, 4, &[]);
    drop(Node::start(&["--boot-store", &v5, "--trust", &publisher, "--data-dir", &data]));
    // Restarted on an older signed release: refused, by name, and only it: the node still
    // serves jobs (an appliance's supervisor would otherwise restart it into the same refusal).
    let refused = Node::start(&["--boot-store", &v4, "--trust", &publisher, "--data-dir", &data]);
    let log = refused.log();
    assert!(log.contains("boot: not serving") && log.contains("boot store stable/x86_64: version 4 is below the floor 5"), "{log}");
    assert_eq!(refused.request("GET", "/v1/boot/stable/x86_64/manifest.json", b"").status, 404, "version 4 is not served");
    let job = format!("{{\"module\":\"{}\",\"input\":\"\"}}", phase_core::encoding::base64_encode(&common::guest("hello")));
    assert_eq!(refused.request("POST", "/v1/jobs", job.as_bytes()).status, 200, "jobs are still served");
    drop(refused);
    // The same or newer serves; without the data dir there is nothing to remember.
    drop(Node::start(&["--boot-store", &v5, "--trust", &publisher, "--data-dir", &data]));
    drop(Node::start(&["--boot-store", &v4, "--trust", &publisher]));
}
