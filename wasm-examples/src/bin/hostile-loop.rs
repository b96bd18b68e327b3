//! Hostile guest: spins forever. Must end as out_of_fuel (or deadline), never hang the node.
fn main() {
    let mut x: u64 = 1;
    loop {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}
