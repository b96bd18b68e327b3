//! Writes over time: input `LINES WORK` prints `tick 1` .. `tick LINES` on stdout, one line
//! after every WORK rounds of busy arithmetic (no clock: time is fuel), then `done` on stderr.
//! For watching an asynchronous job's output while it runs.
use std::io::{Read, Write};

fn main() {
    let mut input = String::new();
    let _ = std::io::stdin().read_to_string(&mut input);
    let mut words = input.split_whitespace().map(|w| w.parse::<u64>().unwrap_or(0));
    let (lines, work) = (words.next().unwrap_or(3), words.next().unwrap_or(1_000_000));
    let mut x: u64 = 1;
    let mut out = std::io::stdout();
    for i in 1..=lines {
        for _ in 0..work {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        // Unbuffered: each line reaches the host when written.
        out.write_all(format!("tick {i}\n").as_bytes()).expect("stdout");
        out.flush().expect("stdout");
    }
    eprintln!("done");
}
