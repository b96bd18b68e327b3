//! Prints the lower-case hex SHA-256 digest of stdin, like `sha256sum -`.
use sha2::{Digest, Sha256};
use std::io::Read;

fn main() {
    let mut hasher = Sha256::new();
    let mut buf = [0u8; 16 * 1024];
    let mut stdin = std::io::stdin();
    loop {
        match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) => {
                eprintln!("sha256sum: {e}");
                std::process::exit(1);
            }
        }
    }
    let digest = hasher.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    println!("{hex}  -");
}
