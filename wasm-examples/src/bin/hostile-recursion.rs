//! Hostile guest: unbounded recursion. Must end as stack_overflow (or a memory trap when the
//! guest's own shadow stack runs out first), never crash the host.
#[inline(never)]
fn descend(n: u64) -> u64 {
    if n == 0 {
        return 1;
    }
    // Not an accumulator pattern, so the compiler cannot turn it into a loop.
    descend(n - 1).wrapping_mul(3) ^ n
}

fn main() {
    let n = std::env::args().count() as u64 + 100_000_000;
    println!("{}", descend(n));
}
