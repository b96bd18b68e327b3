//! Hostile guest: floods stdout. Must end as output_limit with the capped output kept.
use std::io::Write;

fn main() {
    let chunk = vec![b'x'; 64 * 1024]; // not on the 64 KiB guest stack
    let mut out = std::io::stdout();
    loop {
        if out.write_all(&chunk).is_err() {
            std::process::exit(3);
        }
    }
}
