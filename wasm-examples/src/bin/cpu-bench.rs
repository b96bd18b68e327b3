//! CPU benchmark kernel: a sieve of Eratosthenes plus an FNV-1a pass over the sieve, sized by
//! the decimal number on stdin (default 1000000). Prints the prime count and the hash, so the
//! result is checkable and the work cannot be optimised away.
use std::io::Read;

fn main() {
    let mut text = String::new();
    let _ = std::io::stdin().read_to_string(&mut text);
    let n: usize = text.trim().parse().unwrap_or(1_000_000).clamp(2, 50_000_000);
    let mut composite = vec![false; n + 1];
    let mut count = 0u64;
    let mut hash: u64 = 0xcbf29ce484222325;
    for i in 2..=n {
        if !composite[i] {
            count += 1;
            hash = (hash ^ i as u64).wrapping_mul(0x100000001b3);
            let mut j = i * i;
            while j <= n {
                composite[j] = true;
                j += i;
            }
        }
    }
    println!("primes<={n}: {count} fnv1a={hash:016x}");
}
