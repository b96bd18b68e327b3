//! Hostile guest: allocates and touches memory without end. Must end as memory_limit.
fn main() {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = vec![0u8; 1 << 20];
        block[0] = 1;
        block[(1 << 20) - 1] = 1;
        hoard.push(std::hint::black_box(block));
    }
}
