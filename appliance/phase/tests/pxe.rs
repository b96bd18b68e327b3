//! The PXE service on loopback (ports moved above 1024, bound to `lo` so nothing leaves this
//! machine): ProxyDHCP answers boot clients only and never leases, iPXE gets the script URL,
//! a REQUEST on the boot server port gets an ACK, floods are rate limited, malformed packets are
//! counted; TFTP sends the programs with negotiated block size and window, refuses what it
//! must, and gives up on a silent client within its bounds. Needs CAP_NET_RAW
//! (SO_BINDTODEVICE), as `phase node --pxe` does.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use phase::boot::store::BootStore;
use phase::pxe::{Config, Limits, Ports, Pxe, SERVER_PLACEHOLDER};

fn phase(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_phase")).args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Lab {
    dir: PathBuf,
    store: BootStore,
    pxe: Arc<Pxe>,
    ports: Ports,
    programs: Vec<(String, Vec<u8>)>,
    trust: [[u8; 32]; 1],
}

fn lab(name: &str, limits: Limits) -> Lab {
    lab_with(name, limits, false, 100_000, true)
}

/// A store with stable x86_64 and aarch64 releases, and the programs: iPXE's two and, with
/// `grub`, the arm64 GRUB image (its server placeholder among the bytes).
fn lab_with(name: &str, limits: Limits, http_only: bool, kernel_bytes: usize, grub: bool) -> Lab {
    let dir = std::env::temp_dir().join(format!("phase-pxe-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("programs")).unwrap();
    let p = |n: &str| dir.join(n).to_str().unwrap().to_string();
    std::fs::write(dir.join("kernel"), vec![7u8; kernel_bytes]).unwrap();
    std::fs::write(dir.join("initramfs"), vec![9u8; 50_000]).unwrap();
    let key = phase(&["manifest", "keygen", "--out", &p("pub.key")]).split_whitespace().next().unwrap().to_string();
    phase(&["publish", "--key", &p("pub.key"), "--arch", "x86_64", "--version", "3", "--kernel", &p("kernel"), "--initramfs", &p("initramfs"), "--cmdline", "console=ttyS0", "--store", &p("store")]);
    // The arm64 command line holds what GRUB's script parser would read as syntax.
    phase(&["publish", "--key", &p("pub.key"), "--arch", "aarch64", "--version", "5", "--kernel", &p("kernel"), "--initramfs", &p("initramfs"), "--cmdline", "console=ttyAMA0 x=$y;reboot it's", "--store", &p("store")]);
    // Programs whose bytes differ everywhere, so a misplaced block shows; snponly fills its last
    // 1468-byte block exactly (an empty final block must follow).
    let pattern = |len: usize| -> Vec<u8> { (0..len as u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect() };
    let mut programs: Vec<(String, Vec<u8>)> = vec![("undionly.kpxe".into(), pattern(74_213)), ("snponly.efi".into(), pattern(1468 * 120))];
    if grub {
        let mut image = pattern(300_001);
        image[200_000..200_000 + SERVER_PLACEHOLDER.len()].copy_from_slice(SERVER_PLACEHOLDER);
        programs.push(("grubaa64.efi".into(), image));
    }
    for (n, b) in &programs {
        std::fs::write(dir.join("programs").join(n), b).unwrap();
    }
    let trust = [phase_core::encoding::hex_decode_array::<32>(&key).unwrap()];
    let store = BootStore::open(&dir.join("store"), Some(&trust)).unwrap();
    let ports = Ports { dhcp: free_udp_port(), proxy: free_udp_port(), tftp: free_udp_port(), client: free_udp_port() };
    let config = Config {
        interface: "lo".into(),
        http_port: 8700,
        channel: "stable".into(),
        append: vec!["phase.pxe=on".into()],
        http_only,
        ports,
        limits,
        address: Some(Ipv4Addr::LOCALHOST),
    };
    let entries: Vec<_> = store.entries.iter().collect();
    let pxe = Pxe::start(config, &entries, &trust, &dir.join("programs")).unwrap();
    Lab { dir, store, pxe, ports, programs, trust }
}

const FIXED: usize = 236;

fn dhcp(kind: u8, mac: u8, vendor: &[u8], arch: Option<u16>, extra: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; FIXED];
    b[0] = 1;
    b[1] = 1;
    b[2] = 6;
    b[4..8].copy_from_slice(&[0xCA, 0xFE, 0, mac]);
    b[10] = 0x80;
    b[28..34].copy_from_slice(&[0x52, 0x54, 0, 0, 0, mac]);
    b.extend_from_slice(&[99, 130, 83, 99, 53, 1, kind]);
    if !vendor.is_empty() {
        b.extend_from_slice(&[60, vendor.len() as u8]);
        b.extend_from_slice(vendor);
    }
    if let Some(a) = arch {
        b.extend_from_slice(&[93, 2]);
        b.extend_from_slice(&a.to_be_bytes());
    }
    b.extend_from_slice(extra);
    b.push(255);
    b
}

/// The boot file of an answer, and its yiaddr and siaddr.
fn read_answer(b: &[u8]) -> (String, [u8; 4], [u8; 4]) {
    assert_eq!(b[0], 2, "a BOOTREPLY");
    let file = &b[108..236];
    let end = file.iter().position(|c| *c == 0).unwrap();
    (String::from_utf8(file[..end].to_vec()).unwrap(), b[16..20].try_into().unwrap(), b[20..24].try_into().unwrap())
}

fn recv(s: &UdpSocket, wait_ms: u64) -> Option<Vec<u8>> {
    s.set_read_timeout(Some(Duration::from_millis(wait_ms))).unwrap();
    let mut buf = [0u8; 2048];
    s.recv(&mut buf).ok().map(|n| buf[..n].to_vec())
}

#[test]
fn proxy_dhcp_answers_boot_clients_only_and_never_leases() {
    let l = lab("dhcp", Limits::default());
    // Offers are broadcast to the client port: a client socket bound to the wildcard hears them.
    let client = UdpSocket::bind(("0.0.0.0", l.ports.client)).unwrap();
    let server = SocketAddr::from((Ipv4Addr::LOCALHOST, l.ports.dhcp));
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();

    sender.send_to(&dhcp(1, 1, b"PXEClient:Arch:00007:UNDI:003016", Some(7), &[]), server).unwrap();
    let (file, yiaddr, siaddr) = read_answer(&recv(&client, 2000).expect("an offer to UEFI PXE"));
    assert_eq!((file.as_str(), yiaddr, siaddr), ("snponly.efi", [0; 4], [127, 0, 0, 1]));

    sender.send_to(&dhcp(1, 2, b"PXEClient:Arch:00000:UNDI:002001", Some(0), &[]), server).unwrap();
    assert_eq!(read_answer(&recv(&client, 2000).expect("an offer to BIOS PXE")).0, "undionly.kpxe");

    sender.send_to(&dhcp(1, 3, b"PXEClient:Arch:00000:UNDI:002001", Some(0), &[77, 4, b'i', b'P', b'X', b'E']), server).unwrap();
    assert_eq!(read_answer(&recv(&client, 2000).expect("an offer to iPXE")).0, "http://127.0.0.1:8700/v1/pxe/x86_64.ipxe");

    sender.send_to(&dhcp(1, 4, b"HTTPClient:Arch:00016:UNDI:003001", Some(16), &[]), server).unwrap();
    assert_eq!(read_answer(&recv(&client, 2000).expect("an offer to HTTP Boot")).0, "http://127.0.0.1:8700/v1/pxe/snponly.efi");

    // arm64 UEFI: GRUB over TFTP, or its URL for HTTP Boot.
    sender.send_to(&dhcp(1, 11, b"PXEClient:Arch:00011:UNDI:003000", Some(11), &[]), server).unwrap();
    assert_eq!(read_answer(&recv(&client, 2000).expect("an offer to arm64 UEFI PXE")).0, "grubaa64.efi");
    sender.send_to(&dhcp(1, 12, b"HTTPClient:Arch:00019:UNDI:003000", Some(19), &[]), server).unwrap();
    assert_eq!(read_answer(&recv(&client, 2000).expect("an offer to arm64 HTTP Boot")).0, "http://127.0.0.1:8700/v1/pxe/grubaa64.efi");

    // An ordinary DHCP client, a REQUEST on port 67 (meant for the real server), a 32-bit ARM
    // firmware (no program), and garbage: no answer.
    let before = l.pxe.stats.dhcp_answered.load(Relaxed);
    sender.send_to(&dhcp(1, 5, b"udhcp 1.35.0", None, &[]), server).unwrap();
    sender.send_to(&dhcp(1, 6, b"", None, &[]), server).unwrap();
    sender.send_to(&dhcp(3, 1, b"PXEClient:Arch:00007:UNDI:003016", Some(7), &[]), server).unwrap();
    sender.send_to(&dhcp(1, 7, b"PXEClient:Arch:00010:UNDI:003016", Some(10), &[]), server).unwrap();
    sender.send_to(b"\x01\x01\x06\x00garbage", server).unwrap();
    sender.send_to(&dhcp(1, 8, b"PXEClient", Some(7), &[93, 3, 0, 7, 0]), server).unwrap();
    // A relay address (giaddr) the request did not come from: no unicast answer to it.
    let mut relayed = dhcp(1, 13, b"PXEClient:Arch:00007:UNDI:003016", Some(7), &[]);
    relayed[24..28].copy_from_slice(&[127, 0, 0, 9]);
    sender.send_to(&relayed, server).unwrap();
    assert_eq!(recv(&client, 700), None, "no answer to anything but a boot client's DISCOVER");
    let s = &l.pxe.stats;
    assert_eq!(s.dhcp_answered.load(Relaxed), before);
    assert_eq!(s.dhcp_ignored.load(Relaxed), 5);
    assert_eq!(s.dhcp_malformed.load(Relaxed), 2);

    // The REQUEST on the boot server port gets an ACK, to the sender.
    let proxy = SocketAddr::from((Ipv4Addr::LOCALHOST, l.ports.proxy));
    sender.send_to(&dhcp(3, 1, b"PXEClient:Arch:00007:UNDI:003016", Some(7), &[]), proxy).unwrap();
    let ack = recv(&sender, 2000).expect("an ack on the proxy port");
    assert_eq!(read_answer(&ack).0, "snponly.efi");
    assert_eq!(&ack[240..243], &[53, 1, 5], "DHCPACK");

    // A flood from one MAC: 16 answers in 10 s, then silence for it (not for others).
    for _ in 0..24 {
        sender.send_to(&dhcp(1, 9, b"PXEClient:Arch:00007:UNDI:003016", Some(7), &[]), server).unwrap();
    }
    let mut answered = 0;
    while recv(&client, 500).is_some() {
        answered += 1;
    }
    assert_eq!(answered, 16);
    assert_eq!(s.dhcp_rate_limited.load(Relaxed), 8);
    sender.send_to(&dhcp(1, 10, b"PXEClient:Arch:00007:UNDI:003016", Some(7), &[]), server).unwrap();
    assert!(recv(&client, 2000).is_some(), "another client is still answered");
    std::fs::remove_dir_all(&l.dir).unwrap();
}

#[test]
fn without_the_grub_image_arm64_firmware_gets_no_answer() {
    let l = lab_with("no-grub", Limits::default(), false, 1000, false);
    let client = UdpSocket::bind(("0.0.0.0", l.ports.client)).unwrap();
    let server = SocketAddr::from((Ipv4Addr::LOCALHOST, l.ports.dhcp));
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    sender.send_to(&dhcp(1, 1, b"PXEClient:Arch:00011:UNDI:003000", Some(11), &[]), server).unwrap();
    assert_eq!(recv(&client, 700), None, "no program for arm64");
    assert!(l.pxe.script("aarch64.grub").is_none() && l.pxe.initrd("aarch64").is_none());
    sender.send_to(&dhcp(1, 2, b"PXEClient:Arch:00007:UNDI:003016", Some(7), &[]), server).unwrap();
    assert_eq!(read_answer(&recv(&client, 2000).expect("x86-64 UEFI is still answered")).0, "snponly.efi");
    assert_eq!(l.pxe.stats.dhcp_ignored.load(Relaxed), 1);
    std::fs::remove_dir_all(&l.dir).unwrap();
}

#[test]
fn http_only_answers_http_boot_and_ipxe_and_serves_no_tftp() {
    let l = lab_with("http", Limits::default(), true, 100_000, true);
    let client = UdpSocket::bind(("0.0.0.0", l.ports.client)).unwrap();
    let server = SocketAddr::from((Ipv4Addr::LOCALHOST, l.ports.dhcp));
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    sender.send_to(&dhcp(1, 1, b"PXEClient:Arch:00007:UNDI:003016", Some(7), &[]), server).unwrap();
    assert_eq!(recv(&client, 700), None, "no PXE answer");
    sender.send_to(&dhcp(1, 2, b"HTTPClient:Arch:00016:UNDI:003001", Some(16), &[]), server).unwrap();
    assert_eq!(read_answer(&recv(&client, 2000).expect("an HTTP Boot offer")).0, "http://127.0.0.1:8700/v1/pxe/snponly.efi");
    sender.send_to(&dhcp(1, 3, b"PXEClient:Arch:00007:UNDI:003016", Some(7), &[77, 4, b'i', b'P', b'X', b'E']), server).unwrap();
    assert_eq!(read_answer(&recv(&client, 2000).expect("an offer to iPXE")).0, "http://127.0.0.1:8700/v1/pxe/x86_64.ipxe");
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.send_to(&rrq("snponly.efi", &[]), SocketAddr::from((Ipv4Addr::LOCALHOST, l.ports.tftp))).unwrap();
    assert_eq!(recv(&s, 700), None, "no TFTP server");
    std::fs::remove_dir_all(&l.dir).unwrap();
}

fn rrq(name: &str, options: &[(&str, &str)]) -> Vec<u8> {
    let mut b = vec![0, 1];
    for part in [name, "octet"].into_iter().chain(options.iter().flat_map(|(k, v)| [*k, *v])) {
        b.extend_from_slice(part.as_bytes());
        b.push(0);
    }
    b
}

/// A TFTP client: reads `name` with the options given, ACKing the last block of each window.
fn tftp_get(server: SocketAddr, name: &str, options: &[(&str, &str)]) -> Result<Vec<u8>, String> {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.send_to(&rrq(name, options), server).unwrap();
    let (mut block, mut window) = (512usize, 1u16);
    let mut out = Vec::new();
    let mut expect = 1u16;
    let mut in_window = 0;
    let mut buf = vec![0u8; 70000];
    loop {
        let (n, from) = s.recv_from(&mut buf).map_err(|e| e.to_string())?;
        let p = &buf[..n];
        match u16::from_be_bytes([p[0], p[1]]) {
            6 => {
                let fields: Vec<&str> = std::str::from_utf8(&p[2..]).unwrap().split('\0').collect();
                for kv in fields.chunks(2).filter(|c| c.len() == 2) {
                    match kv[0] {
                        "blksize" => block = kv[1].parse().unwrap(),
                        "windowsize" => window = kv[1].parse().unwrap(),
                        _ => {}
                    }
                }
                s.send_to(&[0, 4, 0, 0], from).unwrap();
            }
            3 => {
                let number = u16::from_be_bytes([p[2], p[3]]);
                assert_eq!(number, expect, "blocks in order on loopback");
                out.extend_from_slice(&p[4..]);
                in_window += 1;
                let last = p.len() - 4 < block;
                if in_window == window || last {
                    s.send_to(&[0, 4, p[2], p[3]], from).unwrap();
                    in_window = 0;
                }
                if last {
                    return Ok(out);
                }
                expect = expect.wrapping_add(1);
            }
            5 => return Err(format!("error {}: {}", u16::from_be_bytes([p[2], p[3]]), String::from_utf8_lossy(&p[4..n - 1]))),
            op => return Err(format!("opcode {op}")),
        }
    }
}

#[test]
fn tftp_sends_the_programs_with_negotiated_blocks_and_refuses_the_rest() {
    // Unacknowledged transfers are sent 2 times (300 ms apart), acknowledged ones 5 times.
    let l = lab("tftp", Limits { tftp_timeout: Duration::from_millis(300), tftp_retries: 4, tftp_first_retries: 1, ..Limits::default() });
    let server = SocketAddr::from((Ipv4Addr::LOCALHOST, l.ports.tftp));
    let want = |n: &str| l.programs.iter().find(|(p, _)| p == n).unwrap().1.clone();
    assert_eq!(tftp_get(server, "undionly.kpxe", &[]).unwrap(), want("undionly.kpxe"), "RFC 1350: 512-byte blocks, no options");
    let big = [("blksize", "65464"), ("windowsize", "64"), ("tsize", "0")];
    assert_eq!(tftp_get(server, "/snponly.efi", &big).unwrap(), want("snponly.efi"), "1468-byte blocks, windows of 16, exact multiple");
    assert_eq!(tftp_get(server, "snponly.efi", &[("blksize", "1024"), ("windowsize", "3")]).unwrap(), want("snponly.efi"));
    // GRUB as served: the node's address where the image had its placeholder, nothing else moved.
    let grub = tftp_get(server, "grubaa64.efi", &[("blksize", "1408"), ("windowsize", "8")]).unwrap();
    let mut expected = want("grubaa64.efi");
    expected[200_000..200_000 + SERVER_PLACEHOLDER.len()].copy_from_slice(b"127.0.0.1:8700          ");
    assert!(grub == expected, "grubaa64.efi with the server's address");
    assert!(tftp_get(server, "../etc/passwd", &[]).unwrap_err().starts_with("error 1"));
    assert!(tftp_get(server, "kernel", &[]).unwrap_err().starts_with("error 1"), "only the programs");
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.send_to(&[0, 2, b'x', 0, b'o', b'c', b't', b'e', b't', 0], server).unwrap();
    assert_eq!(recv(&s, 2000).map(|p| p[..4].to_vec()), Some(vec![0, 5, 0, 2]), "write requests: access violation");
    s.send_to(&rrq("snponly.efi", &[("blksize", "7")]), server).unwrap();
    assert_eq!(recv(&s, 2000).map(|p| p[..4].to_vec()), Some(vec![0, 5, 0, 4]), "a malformed option: illegal operation");
    // A transfer counts once the server has read the final ACK, which may come just after the
    // client returns.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while l.pxe.stats.tftp_completed.load(Relaxed) < 4 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(l.pxe.stats.tftp_completed.load(Relaxed), 4);

    // Clients that never acknowledge hold no place: their transfers are pending, and let go
    // after 1 + tftp_first_retries sends; an honest client is served meanwhile.
    let silent: Vec<UdpSocket> = (0..3).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
    for c in &silent {
        c.send_to(&rrq("undionly.kpxe", &[]), server).unwrap();
    }
    assert_eq!(tftp_get(server, "undionly.kpxe", &[]).unwrap(), want("undionly.kpxe"), "not refused behind them");
    // Gone after 2 x 300 ms (tftp_first_retries), long before the 5 x 300 ms an acknowledged
    // transfer gets.
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(l.pxe.stats.tftp_failed.load(Relaxed), 3);
    // A place is taken at the client's first ACK: two per address, the third is refused then.
    let stalled: Vec<UdpSocket> = (0..3).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
    let mut answers = Vec::new();
    for c in &stalled {
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        c.send_to(&rrq("undionly.kpxe", &[]), server).unwrap();
        let mut buf = [0u8; 600];
        let (n, from) = c.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..4], &[0, 3, 0, 1], "block 1");
        c.send_to(&[0, 4, 0, 1], from).unwrap();
        let (n2, _) = c.recv_from(&mut buf).unwrap();
        answers.push((n, buf[..4.min(n2)].to_vec()));
    }
    assert_eq!(answers[0].1, vec![0, 3, 0, 2], "the first acknowledged transfer goes on");
    assert_eq!(answers[1].1, vec![0, 3, 0, 2], "the second too");
    assert_eq!(answers[2].1, vec![0, 5, 0, 2], "the third for one address is refused at its ACK");
    // 300 ms x (1 + 4 retries) and the stalled transfers are gone.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(tftp_get(server, "undionly.kpxe", &[]).unwrap(), want("undionly.kpxe"), "slots given back");
    std::fs::remove_dir_all(&l.dir).unwrap();
}

#[test]
fn booted_machines_get_a_script_and_an_initrd_carrying_the_release_and_the_programs() {
    let l = lab("boot", Limits::default());
    let script = l.pxe.script("x86_64.ipxe").unwrap();
    assert!(script.starts_with("#!ipxe\n"), "{script}");
    let kernel_line = script.lines().find(|l| l.starts_with("kernel ")).unwrap();
    assert!(kernel_line.starts_with("kernel http://127.0.0.1:8700/v1/boot/stable/x86_64/kernel initrd=initrd console=ttyS0 phase.pxe=on phase.floor=3 phase.time_floor="), "{kernel_line}");
    assert!(script.contains("\ninitrd --name initrd http://127.0.0.1:8700/v1/pxe/x86_64/initrd\nboot\n"), "{script}");
    assert!(l.pxe.script("aarch64.ipxe").is_none() && l.pxe.script("x86_64.grub").is_none());
    let initrd = l.pxe.initrd("x86_64").unwrap();
    let has = |initrd: &[u8], needle: &[u8]| initrd.windows(needle.len()).any(|w| w == needle);
    for path in ["boot/phase/stable/x86_64/manifest.json", "usr/lib/ipxe/snponly.efi", "usr/lib/ipxe/undionly.kpxe", "etc/phase/trust"] {
        assert!(has(initrd, path.as_bytes()), "initrd carries {path}");
    }
    assert!(!has(initrd, b"usr/lib/ipxe/grubaa64.efi"), "an x86_64 machine carries x86 programs only");

    // arm64: a GRUB script, every parameter of the signed command line quoted as data.
    let script = l.pxe.script("aarch64.grub").unwrap();
    let lines: Vec<&str> = script.lines().collect();
    assert_eq!(lines[0], "echo 'Phase: booting stable/aarch64 version 5 from http://127.0.0.1:8700'", "{script}");
    assert!(lines[1].starts_with("linux (http,127.0.0.1:8700)/v1/boot/stable/aarch64/kernel 'console=ttyAMA0' 'x=$y;reboot' 'it'\\''s' 'phase.pxe=on' 'phase.floor=5' 'phase.time_floor="), "{script}");
    assert_eq!(&lines[2..], ["initrd (http,127.0.0.1:8700)/v1/pxe/aarch64/initrd", "boot"], "{script}");
    let initrd = l.pxe.initrd("aarch64").unwrap();
    for path in ["boot/phase/stable/aarch64/manifest.json", "usr/lib/ipxe/grubaa64.efi"] {
        assert!(has(initrd, path.as_bytes()), "initrd carries {path}");
    }
    assert!(!has(initrd, b"usr/lib/ipxe/snponly.efi"), "an arm64 machine carries GRUB only");
    // It carries the image as built (the placeholder), to serve it with its own address.
    assert!(has(initrd, SERVER_PLACEHOLDER));
    std::fs::remove_dir_all(&l.dir).unwrap();
}

#[test]
fn without_an_x86_64_release_or_programs_pxe_is_refused_with_the_reason() {
    let dir = std::env::temp_dir().join(format!("phase-pxe-refuse-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = || Config {
        interface: "lo".into(),
        http_port: 8700,
        channel: "stable".into(),
        append: vec![],
        http_only: false,
        ports: Ports { dhcp: free_udp_port(), proxy: free_udp_port(), tftp: free_udp_port(), client: free_udp_port() },
        limits: Limits::default(),
        address: Some(Ipv4Addr::LOCALHOST),
    };
    let e = Pxe::start(config(), &[], &[], &dir).err().unwrap().to_string();
    assert!(e.contains("undionly.kpxe"), "{e}");
    std::fs::write(dir.join("undionly.kpxe"), b"x").unwrap();
    std::fs::write(dir.join("snponly.efi"), b"x").unwrap();
    let e = Pxe::start(config(), &[], &[], &dir).err().unwrap().to_string();
    assert!(e.contains("no stable/x86_64 release with iPXE") && e.contains("no stable/aarch64 release with grubaa64.efi"), "{e}");
    // A GRUB image that is not ours (no placeholder for the server) is refused by name.
    let l = lab_with("foreign-grub", Limits::default(), false, 1000, false);
    std::fs::write(l.dir.join("programs/grubaa64.efi"), b"MZ some other GRUB").unwrap();
    let entries: Vec<_> = l.store.entries.iter().collect();
    let e = Pxe::start(config(), &entries, &l.trust, &l.dir.join("programs")).err().unwrap().to_string();
    assert!(e.contains("grubaa64.efi has no server placeholder"), "{e}");
    std::fs::remove_dir_all(&l.dir).unwrap();
    let e = Pxe::start(Config { address: None, interface: "phase-none0".into(), ..config() }, &[], &[], &dir).err().unwrap().to_string();
    assert!(e.contains("phase-none0 has no IPv4 address"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_http_routes_serve_script_initrd_and_programs_within_the_download_cap() {
    use std::io::{Read, Write};
    // A 16 MiB kernel: its initrd outgrows what loopback buffers absorb, so a client that stops
    // reading holds its download slot.
    let l = lab_with("routes", Limits::default(), false, 16 << 20, true);
    // A node as `phase node --boot-store --trust --pxe lo --max-downloads 1` starts one (its
    // PXE ports moved, its address given: this machine's loopback).
    let mut config = phase::node::NodeConfig::new("127.0.0.1:0");
    config.memory_budget = Some(256 << 20);
    config.boot_store = Some(l.dir.join("store"));
    config.trust = l.trust.to_vec();
    config.max_downloads = Some(1);
    config.pxe = Some(phase::node::PxeSettings {
        interface: "lo".into(),
        programs: Some(l.dir.join("programs")),
        channel: Some("stable".into()),
        append: vec!["phase.pxe=on".into()],
        ports: Some(Ports { dhcp: free_udp_port(), proxy: free_udp_port(), tftp: free_udp_port(), client: free_udp_port() }),
        address: Some(Ipv4Addr::LOCALHOST),
        ..Default::default()
    });
    let node = phase::node::Node::start(config).unwrap();
    let server = node.addr();
    // The lab's scripts name port 8700; the node's name its own.
    let expected_script = |name: &str| l.pxe.script(name).unwrap().replace(":8700", &format!(":{}", server.port()));
    let get = |path: &str| -> (u16, Vec<u8>) {
        let mut s = std::net::TcpStream::connect(server).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        let end = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let status = std::str::from_utf8(&out[9..12]).unwrap().parse().unwrap();
        (status, out[end + 4..].to_vec())
    };
    let (status, script) = get("/v1/pxe/x86_64.ipxe");
    assert_eq!((status, String::from_utf8(script).unwrap()), (200, expected_script("x86_64.ipxe")));
    let (status, script) = get("/v1/pxe/aarch64.grub");
    assert_eq!((status, String::from_utf8(script).unwrap()), (200, expected_script("aarch64.grub")));
    let (status, grub) = get("/v1/pxe/grubaa64.efi");
    let original = &l.programs.iter().find(|(n, _)| n == "grubaa64.efi").unwrap().1;
    assert_eq!((status, grub.clone()), (200, phase::pxe::with_server(original, Ipv4Addr::LOCALHOST, server.port()).unwrap()));
    let served_at = format!("127.0.0.1:{}", server.port());
    assert!(grub.windows(served_at.len()).any(|w| w == served_at.as_bytes()), "served over HTTP with the address too");
    let (status, program) = get("/v1/pxe/snponly.efi");
    assert_eq!((status, program), (200, l.programs[1].1.clone()));
    assert_eq!(get("/v1/pxe/x86_64/../../etc/passwd").0, 404);
    assert_eq!(get("/v1/pxe/aarch64.ipxe").0, 404);
    assert_eq!(get("/v1/pxe/arm/initrd").0, 404);
    // One client takes the only download slot and stops reading: the next initrd or program
    // download waits for it (503 + Retry-After), as an artifact download would.
    let mut stalled = std::net::TcpStream::connect(server).unwrap();
    stalled.write_all(b"GET /v1/pxe/x86_64/initrd HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut head = [0u8; 12];
    stalled.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    assert_eq!(get("/v1/pxe/snponly.efi").0, 503);
    assert_eq!(get("/v1/boot/stable/x86_64/kernel").0, 503, "one cap for artifacts and PXE files");
    drop(stalled);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (status, initrd) = loop {
        let r = get("/v1/pxe/x86_64/initrd");
        if r.0 == 200 || std::time::Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status, 200, "the slot comes back when the stalled client is gone");
    assert_eq!(&initrd[..], &l.pxe.initrd("x86_64").unwrap()[..]);
    node.stop();
    std::fs::remove_dir_all(&l.dir).unwrap();
}

#[test]
fn tftp_requests_nobody_acknowledges_hold_no_place_whatever_their_source() {
    // Default limits: 8 places, 2 per address, 1 s timeouts.
    let l = lab("tftp-flood", Limits::default());
    let server = SocketAddr::from((Ipv4Addr::LOCALHOST, l.ports.tftp));
    let want = l.programs.iter().find(|(p, _)| p == "undionly.kpxe").unwrap().1.clone();
    // Read requests from 40 source addresses, re-sent and never acknowledged (as a forger's
    // would be: it never sees the answers), all through the honest transfers below.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let sources: Vec<UdpSocket> = (2..42u8).map(|i| UdpSocket::bind((Ipv4Addr::new(127, 0, 0, i), 0)).unwrap()).collect();
            let mut sent = 0u64;
            while !stop.load(Relaxed) {
                for s in &sources {
                    let _ = s.send_to(&rrq("undionly.kpxe", &[("blksize", "1468")]), server);
                    sent += 1;
                }
                // 160 requests a second: an honest client has 0.4 s to answer before 64 newer
                // ones displace its transfer (on loopback it needs well under a millisecond).
                std::thread::sleep(Duration::from_millis(250));
            }
            sent
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let mut served = 0;
    for _ in 0..10 {
        if tftp_get(server, "undionly.kpxe", &[("blksize", "1468")]).is_ok_and(|got| got == want) {
            served += 1;
        }
    }
    stop.store(true, Relaxed);
    let sent = flood.join().unwrap();
    assert_eq!(served, 10, "every honest transfer through a flood of {sent} unacknowledged requests");
    assert!(l.pxe.stats.tftp_displaced.load(Relaxed) > 0, "the flood outgrew the pending list ({sent} requests)");
    std::fs::remove_dir_all(&l.dir).unwrap();
}
